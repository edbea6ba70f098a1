// POSIX attributes on a real mount: mode, ownership, nanosecond times,
// extended attributes and statfs.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <string>

#include "tests/integration/mount_fixture.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {
namespace {

class PosixAttrs : public RealMount {};

TEST_F(PosixAttrs, ChmodAndChownPersist) {
  ASSERT_EQ(write_file(path("f"), "x"), 0);
  ASSERT_EQ(mkdir(path("d").c_str(), 0755), 0);
  ASSERT_EQ(chmod(path("f").c_str(), 04751), 0);
  ASSERT_EQ(chown(path("f").c_str(), 1234, 5678), 0);
  ASSERT_EQ(chmod(path("d").c_str(), 01777), 0);
  auto check = [&] {
    struct stat f = stat_of(path("f"));
    EXPECT_EQ(f.st_mode & 07777, 0751u) << "chown by root clears setuid";
    EXPECT_TRUE(S_ISREG(f.st_mode));
    EXPECT_EQ(f.st_uid, 1234u);
    EXPECT_EQ(f.st_gid, 5678u);
    struct stat d = stat_of(path("d"));
    EXPECT_EQ(d.st_mode & 07777, 01777u);
    EXPECT_TRUE(S_ISDIR(d.st_mode));
  };
  check();
  ASSERT_NO_FATAL_FAILURE(remount());
  check();
}

TEST_F(PosixAttrs, ChmodAfterChownKeepsSetuid) {
  ASSERT_EQ(write_file(path("f"), "x"), 0);
  ASSERT_EQ(chown(path("f").c_str(), 42, 43), 0);
  ASSERT_EQ(chmod(path("f").c_str(), 06755), 0);
  EXPECT_EQ(stat_of(path("f")).st_mode & 07777, 06755u);
}

// statx(2) STATX_BTIME: the kernel asks FUSE_STATX, which libfuse 3.14
// does not know (fs/kernel_channel.h answers it). The birth time is the
// creation's, moved neither by a write nor by a remount.
TEST_F(PosixAttrs, StatxReportsTheBirthTime) {
  struct timespec before {};
  ASSERT_EQ(clock_gettime(CLOCK_REALTIME, &before), 0);
  ASSERT_EQ(write_file(path("born"), "x"), 0);
  auto btime_of = [&](const std::string& p) {
    struct statx sx {};
    EXPECT_EQ(statx(AT_FDCWD, p.c_str(), AT_STATX_FORCE_SYNC, STATX_BASIC_STATS | STATX_BTIME, &sx),
              0)
        << strerror(errno);
    EXPECT_TRUE(sx.stx_mask & STATX_BTIME) << "no birth time in the statx answer";
    return sx.stx_btime;
  };
  struct statx_timestamp born = btime_of(path("born"));
  EXPECT_GE(born.tv_sec, before.tv_sec - 1);
  EXPECT_LE(born.tv_sec, before.tv_sec + 60);
  ASSERT_EQ(write_file(path("born"), "rewritten later"), 0);
  ASSERT_NO_FATAL_FAILURE(remount());
  struct statx_timestamp again = btime_of(path("born"));
  EXPECT_EQ(again.tv_sec, born.tv_sec);
  EXPECT_EQ(again.tv_nsec, born.tv_nsec);
  EXPECT_TRUE(btime_of(mnt()).tv_sec > 0) << "the root has a birth time too";
}

TEST_F(PosixAttrs, UtimensatStoresNanosecondTimes) {
  ASSERT_EQ(write_file(path("f"), "x"), 0);
  ASSERT_EQ(symlink("f", path("l").c_str()), 0);
  const timespec times[2] = {{1000000000, 123456789}, {1500000000, 987654321}};
  ASSERT_EQ(utimensat(AT_FDCWD, path("f").c_str(), times, 0), 0);
  const timespec ltimes[2] = {{1100000000, 1}, {1200000000, 999999999}};
  ASSERT_EQ(utimensat(AT_FDCWD, path("l").c_str(), ltimes, AT_SYMLINK_NOFOLLOW), 0);
  auto check = [&] {
    struct stat st = stat_of(path("f"));
    EXPECT_EQ(st.st_atim.tv_sec, 1000000000);
    EXPECT_EQ(st.st_atim.tv_nsec, 123456789);
    EXPECT_EQ(st.st_mtim.tv_sec, 1500000000);
    EXPECT_EQ(st.st_mtim.tv_nsec, 987654321);
    struct stat l = stat_of(path("l"));
    EXPECT_EQ(l.st_mtim.tv_sec, 1200000000);
    EXPECT_EQ(l.st_mtim.tv_nsec, 999999999);
  };
  check();
  ASSERT_NO_FATAL_FAILURE(remount());
  check();
}

TEST_F(PosixAttrs, UtimeNowSetsTheCurrentTimeAndUtimeOmitLeavesTheField) {
  ASSERT_EQ(write_file(path("f"), "x"), 0);
  const timespec old_times[2] = {{1000000000, 111}, {1000000000, 222}};
  ASSERT_EQ(utimensat(AT_FDCWD, path("f").c_str(), old_times, 0), 0);
  timespec before;
  clock_gettime(CLOCK_REALTIME, &before);
  const timespec now_omit[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  ASSERT_EQ(utimensat(AT_FDCWD, path("f").c_str(), now_omit, 0), 0);
  struct stat st = stat_of(path("f"));
  EXPECT_EQ(st.st_atim.tv_sec, 1000000000);
  EXPECT_EQ(st.st_atim.tv_nsec, 111);
  // Coarse clocks may lag by a tick; a minute of slack still catches "not set".
  EXPECT_GE(st.st_mtim.tv_sec, before.tv_sec - 1);
  EXPECT_LE(st.st_mtim.tv_sec, before.tv_sec + 60);
  EXPECT_GE(st.st_ctim.tv_sec, before.tv_sec - 1);
}

TEST_F(PosixAttrs, WriteUpdatesMtimeAndCtime) {
  ASSERT_EQ(write_file(path("f"), "x"), 0);
  const timespec old_times[2] = {{1000000000, 0}, {1000000000, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, path("f").c_str(), old_times, 0), 0);
  {
    UniqueFd fd = open_fd(path("f"), O_WRONLY);
    ASSERT_TRUE(fd.ok());
    ASSERT_EQ(pwrite(fd.get(), "y", 1, 0), 1);
    ASSERT_EQ(fsync(fd.get()), 0);
  }
  EXPECT_GT(stat_of(path("f")).st_mtim.tv_sec, 1000000000);
}

TEST_F(PosixAttrs, XattrsSetGetListRemoveAndPersist) {
  ASSERT_EQ(write_file(path("f"), "x"), 0);
  const std::string big(2000, 'v');
  ASSERT_EQ(setxattr(path("f").c_str(), "user.one", "1", 1, 0), 0);
  ASSERT_EQ(setxattr(path("f").c_str(), "user.two", "second", 6, 0), 0);
  ASSERT_EQ(setxattr(path("f").c_str(), "user.big", big.data(), big.size(), 0), 0);
  ASSERT_EQ(setxattr(path("f").c_str(), "user.empty", "", 0, 0), 0);
  EXPECT_EQ(SFS_ERRNO_OF(setxattr(path("f").c_str(), "user.one", "z", 1, XATTR_CREATE)), EEXIST);
  EXPECT_EQ(SFS_ERRNO_OF(setxattr(path("f").c_str(), "user.nope", "z", 1, XATTR_REPLACE)), ENODATA);
  ASSERT_EQ(setxattr(path("f").c_str(), "user.two", "2nd", 3, XATTR_REPLACE), 0);
  char buf[4096];
  EXPECT_EQ(SFS_ERRNO_OF(getxattr(path("f").c_str(), "user.missing", buf, sizeof(buf))), ENODATA);
  EXPECT_EQ(SFS_ERRNO_OF(getxattr(path("f").c_str(), "user.two", buf, 1)), ERANGE);
  ASSERT_EQ(removexattr(path("f").c_str(), "user.one"), 0);
  EXPECT_EQ(SFS_ERRNO_OF(removexattr(path("f").c_str(), "user.one")), ENODATA);

  auto check = [&] {
    auto get = [&](const char* name) {
      std::string v(8192, '\0');
      ssize_t n = getxattr(path("f").c_str(), name, v.data(), v.size());
      return n < 0 ? "<errno " + std::to_string(errno) + ">" : v.substr(0, size_t(n));
    };
    EXPECT_EQ(get("user.two"), "2nd");
    EXPECT_EQ(get("user.big"), big);
    EXPECT_EQ(get("user.empty"), "");
    EXPECT_EQ(get("user.one"), "<errno " + std::to_string(ENODATA) + ">");
    EXPECT_EQ(getxattr(path("f").c_str(), "user.big", nullptr, 0), ssize_t(big.size()))
        << "size probe";
    ssize_t need = listxattr(path("f").c_str(), nullptr, 0);
    ASSERT_GT(need, 0) << "list size probe";
    std::string list(size_t(need), '\0');
    ASSERT_EQ(listxattr(path("f").c_str(), list.data(), list.size()), need);
    std::set<std::string> names;
    for (size_t i = 0; i < list.size();) {
      std::string name(list.c_str() + i);
      names.insert(name);
      i += name.size() + 1;
    }
    // The host may add security.* names of its own (e.g. SELinux); we
    // check ours are exactly the user.* ones left.
    std::set<std::string> user;
    for (const auto& n : names) {
      if (n.rfind("user.", 0) == 0) user.insert(n);
    }
    EXPECT_EQ(user, (std::set<std::string>{"user.two", "user.big", "user.empty"}));
    if (need > 1) {
      EXPECT_EQ(SFS_ERRNO_OF(listxattr(path("f").c_str(), list.data(), 1)), ERANGE);
    }
  };
  check();
  ASSERT_NO_FATAL_FAILURE(remount());
  check();
}

TEST_F(PosixAttrs, XattrsWorkOnDirectories) {
  ASSERT_EQ(mkdir(path("d").c_str(), 0755), 0);
  ASSERT_EQ(setxattr(path("d").c_str(), "user.tag", "dir", 3, 0), 0);
  ASSERT_NO_FATAL_FAILURE(remount());
  char buf[16] = {};
  EXPECT_EQ(getxattr(path("d").c_str(), "user.tag", buf, sizeof(buf)), 3);
  EXPECT_EQ(std::string(buf), "dir");
}

TEST_F(PosixAttrs, StatfsReportsSaneGeometry) {
  struct statfs sf;
  ASSERT_EQ(statfs(mnt().c_str(), &sf), 0);
  EXPECT_EQ(sf.f_bsize, 4096);
  EXPECT_LE(sf.f_blocks * sf.f_bsize, 2ull << 30) << "a 2G image";
  EXPECT_GE(sf.f_blocks * sf.f_bsize, 1ull << 30) << "a 2G image loses < half to metadata";
  EXPECT_GT(sf.f_blocks, 0u);
  EXPECT_GT(sf.f_bfree, 0u);
  EXPECT_LE(sf.f_bfree, sf.f_blocks);
  EXPECT_LE(sf.f_bavail, sf.f_bfree);
  EXPECT_GT(sf.f_files, 0u);
  EXPECT_LE(sf.f_ffree, sf.f_files);
  EXPECT_EQ(sf.f_namelen, 255);
  // Writing 8 MiB and syncing must show up in the free count.
  std::string data(8 << 20, 'z');
  ASSERT_EQ(write_file(path("f"), data), 0);
  {
    UniqueFd fd = open_fd(path("f"), O_RDONLY);
    ASSERT_EQ(fsync(fd.get()), 0);
  }
  struct statfs after;
  ASSERT_EQ(statfs(mnt().c_str(), &after), 0);
  EXPECT_LE(after.f_bfree * after.f_bsize + (8u << 20), sf.f_bfree * sf.f_bsize);
  EXPECT_LT(after.f_ffree, sf.f_ffree);
}


// `mount -o remount,rw` reaches only the kernel: a daemon that serves the
// mount read-only would go on refusing every change with EROFS (as it did:
// the remount succeeded and every write failed). The helper refuses it
// with a message instead, and leaves the mount read-only. A daemon that
// serves read-write follows remount,ro and remount,rw as any filesystem.
CommandResult remount_helper(const std::string& image, const std::string& mnt, const char* opts) {
  // What `mount -o remount,... DIR` runs through mount.fuse3 (the helper
  // is not on this test's PATH).
  return run_command({stablefs_bin(), image, mnt, "-o", std::string("remount,") + opts},
                     std::chrono::seconds(30));
}

bool kernel_read_only(const std::string& mnt) {
  struct statvfs st;
  return statvfs(mnt.c_str(), &st) == 0 && (st.f_flag & ST_RDONLY);
}

class ReadOnlyMount : public RealMount {
 protected:
  std::string mount_options() const override { return "ro"; }
};

TEST_F(ReadOnlyMount, RemountRwIsRefusedWithAMessageAndTheMountStaysReadOnly) {
  ASSERT_TRUE(kernel_read_only(mnt()));
  CommandResult r = remount_helper(image(), mnt(), "rw");
  EXPECT_TRUE(r.exited && r.exit_code != 0) << r.describe() << "\n" << r.output;
  EXPECT_NE(r.output.find("serves it read-only"), std::string::npos) << r.output;
  EXPECT_TRUE(kernel_read_only(mnt())) << "the kernel's mount must stay read-only";
  EXPECT_EQ(write_file(path("f"), "x"), EROFS);
}

TEST_F(PosixAttrs, RemountRoThenRwOfAReadWriteDaemonWorks) {
  ASSERT_EQ(write_file(path("a"), "1"), 0);
  CommandResult ro = remount_helper(image(), mnt(), "ro");
  ASSERT_TRUE(ro.ok()) << ro.describe() << "\n" << ro.output;
  EXPECT_TRUE(kernel_read_only(mnt()));
  EXPECT_EQ(write_file(path("b"), "2"), EROFS);
  CommandResult rw = remount_helper(image(), mnt(), "rw");
  ASSERT_TRUE(rw.ok()) << rw.describe() << "\n" << rw.output;
  EXPECT_FALSE(kernel_read_only(mnt()));
  EXPECT_EQ(write_file(path("b"), "2"), 0) << strerror(errno);
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(slurp(path("b")), "2");
}

}  // namespace
}  // namespace stablefs::integ
