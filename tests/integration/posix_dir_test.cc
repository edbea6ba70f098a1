// Directory listing on a real mount: 100k entries in one directory are all
// listed exactly once (this spans hundreds of getdents calls, so it also
// checks that readdir cookies resume at the right place), before and after
// a remount.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "tests/integration/mount_fixture.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {
namespace {

class PosixDir : public RealMount {};

constexpr int kEntries = 100000;

std::string entry_name(int i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "entry-%06d", i);
  return buf;
}

// Counts how often each entry-N name is listed; reports anything else.
struct Listing {
  std::vector<int> seen = std::vector<int>(kEntries, 0);
  int dots = 0;
  std::vector<std::string> strangers;
  int wrong_type = 0;
};

Listing list_dir(const std::string& dir) {
  Listing l;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    l.strangers.push_back("<opendir errno " + std::to_string(errno) + ">");
    return l;
  }
  errno = 0;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") {
      ++l.dots;
      continue;
    }
    int i = -1;
    if (name.size() == 12 && name.rfind("entry-", 0) == 0) i = std::stoi(name.substr(6));
    if (i < 0 || i >= kEntries || entry_name(i) != name) {
      l.strangers.push_back(name);
      continue;
    }
    ++l.seen[size_t(i)];
    if (e->d_type != DT_REG && e->d_type != DT_UNKNOWN) ++l.wrong_type;
  }
  if (errno != 0) l.strangers.push_back("<readdir errno " + std::to_string(errno) + ">");
  closedir(d);
  return l;
}

void expect_each_listed_once(const Listing& l) {
  EXPECT_EQ(l.dots, 2);
  EXPECT_TRUE(l.strangers.empty()) << "first unexpected entry: " << l.strangers.front();
  int missing = 0, duplicated = 0, first_bad = -1;
  for (int i = 0; i < kEntries; ++i) {
    if (l.seen[size_t(i)] == 1) continue;
    if (first_bad < 0) first_bad = i;
    (l.seen[size_t(i)] == 0 ? missing : duplicated)++;
  }
  EXPECT_EQ(missing, 0) << "first bad: " << entry_name(first_bad);
  EXPECT_EQ(duplicated, 0) << "first bad: " << entry_name(first_bad);
  EXPECT_EQ(l.wrong_type, 0);
}

TEST_F(PosixDir, ReaddirOfHundredThousandEntriesListsEachExactlyOnce) {
  const std::string dir = path("big");
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  UniqueFd dfd = open_fd(dir, O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(dfd.ok());
  // mknod makes an empty regular file in one request (create+release would
  // be three), which keeps this test well inside a minute.
  for (int i = 0; i < kEntries; ++i) {
    ASSERT_EQ(mknodat(dfd.get(), entry_name(i).c_str(), S_IFREG | 0644, 0), 0)
        << entry_name(i) << ": " << strerror(errno);
  }
  dfd.reset();
  expect_each_listed_once(list_dir(dir));

  ASSERT_NO_FATAL_FAILURE(remount());
  expect_each_listed_once(list_dir(dir));
  // Lookups of names spread over the whole directory, and of one that was
  // never created.
  for (int i = 0; i < kEntries; i += 997) {
    EXPECT_TRUE(S_ISREG(stat_of(dir + "/" + entry_name(i)).st_mode)) << entry_name(i);
  }
  EXPECT_EQ(SFS_ERRNO_OF(access((dir + "/entry-x").c_str(), F_OK)), ENOENT);
  // Deleting every other entry leaves exactly the rest.
  for (int i = 0; i < kEntries; i += 2) {
    ASSERT_EQ(unlink((dir + "/" + entry_name(i)).c_str()), 0) << entry_name(i);
  }
  Listing l = list_dir(dir);
  int odd_once = 0, even_seen = 0;
  for (int i = 0; i < kEntries; ++i) {
    if (i % 2 == 0)
      even_seen += l.seen[size_t(i)];
    else
      odd_once += l.seen[size_t(i)] == 1;
  }
  EXPECT_EQ(even_seen, 0);
  EXPECT_EQ(odd_once, kEntries / 2);
}

}  // namespace
}  // namespace stablefs::integ
