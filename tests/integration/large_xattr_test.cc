// Xattr sets larger than one block on a real mount (core/FORMAT.md, "Xattr
// sets of several blocks"): what xfstests' generic/020 asks of FSTYP=fuse
// (1000 attributes on one file, a 65536-byte value), through the syscalls
// and the kernel's own limits, across a remount, with fsck clean after.
#include <sys/xattr.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <set>
#include <string>

#include "tests/integration/mount_fixture.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {
namespace {

class LargeXattrs : public RealMount {
 protected:
  std::string get(const std::string& p, const std::string& name) {
    ssize_t need = getxattr(p.c_str(), name.c_str(), nullptr, 0);
    if (need < 0) return "<errno " + std::to_string(errno) + ">";
    std::string v(size_t(need), '\0');
    ssize_t n = getxattr(p.c_str(), name.c_str(), v.data(), v.size());
    if (n < 0) return "<errno " + std::to_string(errno) + ">";
    return v.substr(0, size_t(n));
  }
  std::set<std::string> user_names(const std::string& p) {
    ssize_t need = listxattr(p.c_str(), nullptr, 0);
    EXPECT_GE(need, 0) << "errno " << errno;
    std::string list(size_t(std::max<ssize_t>(need, 0)), '\0');
    EXPECT_EQ(listxattr(p.c_str(), list.data(), list.size()), need);
    std::set<std::string> names;
    for (size_t i = 0; i < list.size();) {
      std::string name(list.c_str() + i);
      i += name.size() + 1;
      if (name.rfind("user.", 0) == 0) names.insert(name);
    }
    return names;
  }
};

TEST_F(LargeXattrs, AThousandAttributesAndA64KiBValueSurviveARemount) {
  const std::string f = path("f");
  ASSERT_EQ(write_file(f, "x"), 0);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 1000; i++) {
    std::string name = "user.attribute_" + std::to_string(i);
    std::string value = "value_" + std::to_string(i);
    ASSERT_EQ(setxattr(f.c_str(), name.c_str(), value.data(), value.size(), 0), 0)
        << name << ": errno " << errno;
  }
  auto took = std::chrono::steady_clock::now() - start;
  std::printf("[large-xattr] 1000 setxattr calls took %lld ms\n",
              (long long)std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
  const std::string big(65536, 'B');
  ASSERT_EQ(setxattr(f.c_str(), "user.long_attr", big.data(), big.size(), 0), 0)
      << "errno " << errno;
  // One byte more is the kernel's E2BIG (XATTR_SIZE_MAX), before the daemon.
  const std::string too_big(65537, 'B');
  EXPECT_EQ(SFS_ERRNO_OF(setxattr(f.c_str(), "user.too_big", too_big.data(), too_big.size(), 0)),
            E2BIG);

  remount();
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(user_names(f).size(), 1001u);
  for (int i = 0; i < 1000; i++)
    ASSERT_EQ(get(f, "user.attribute_" + std::to_string(i)), "value_" + std::to_string(i)) << i;
  EXPECT_EQ(get(f, "user.long_attr"), big);
  // Removing them all returns the file to no xattr block at all.
  for (int i = 0; i < 1000; i++)
    ASSERT_EQ(removexattr(f.c_str(), ("user.attribute_" + std::to_string(i)).c_str()), 0) << i;
  ASSERT_EQ(removexattr(f.c_str(), "user.long_attr"), 0);
  EXPECT_EQ(user_names(f), std::set<std::string>{});
  EXPECT_EQ(stat_of(f).st_blocks, 8) << "the file's one data block only";
  unmount_only();
  CommandResult fsck = run_fsck({"-n"});
  EXPECT_TRUE(fsck.ok()) << fsck.describe() << "\n" << fsck.output;
}

TEST_F(LargeXattrs, SetsPastTheBoundGetENOSPCAndTheImageChecksClean) {
  const std::string f = path("f");
  ASSERT_EQ(write_file(f, ""), 0);
  const std::string v(65536, 'v');
  for (int i = 0; i < 3; i++)
    ASSERT_EQ(setxattr(f.c_str(), ("user.v" + std::to_string(i)).c_str(), v.data(), v.size(), 0),
              0)
        << i << ": errno " << errno;
  EXPECT_EQ(SFS_ERRNO_OF(setxattr(f.c_str(), "user.v3", v.data(), v.size(), 0)), ENOSPC);
  EXPECT_EQ(user_names(f).size(), 3u);
  // st_blocks counts the index and every member: 196648 bytes of set in
  // 49 members, and the index.
  EXPECT_EQ(stat_of(f).st_blocks, 8 * 50);
  unmount_only();
  CommandResult fsck = run_fsck({"-n"});
  EXPECT_TRUE(fsck.ok()) << fsck.describe() << "\n" << fsck.output;
}

}  // namespace
}  // namespace stablefs::integ
