// chattr flags on a real mount: chattr/lsattr (e2fsprogs) reach the daemon
// through FUSE's ioctl path (fs/ops_flags.cc), and the engine enforces
// immutable and append-only against write, truncate, setattr, unlink,
// rename and link (core/flags_fs.cc). struct fsxattr (FS_IOC_FSGETXATTR /
// FSSETXATTR, xfs_io's chattr) carries the same flags.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "tests/integration/mount_fixture.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {
namespace {

class ChattrFlags : public RealMount {
 protected:
  void chattr(const std::string& how, const std::string& p) {
    CommandResult r = run_command({"chattr", how, p});
    ASSERT_TRUE(r.ok()) << "chattr " << how << ": " << r.describe() << "\n" << r.output;
  }
  // lsattr's flag column, e.g. "----ia----------------".
  std::string lsattr(const std::string& p) {
    CommandResult r = run_command({"lsattr", "-d", p});
    EXPECT_TRUE(r.ok()) << "lsattr: " << r.describe() << "\n" << r.output;
    return r.output.substr(0, r.output.find(' '));
  }
};

// chattr +S (xfstests generic/507 and 596 ask for it): stored, shown,
// survives remount; the engine's test shows the writes are synchronous.
TEST_F(ChattrFlags, SyncFlagIsSetShownAndKept) {
  std::string f = path("f");
  ASSERT_EQ(write_file(f, "x"), 0);
  chattr("+S", f);
  EXPECT_NE(lsattr(f).find('S'), std::string::npos) << lsattr(f);
  ASSERT_EQ(write_file(f, "written under +S"), 0);
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_NE(lsattr(f).find('S'), std::string::npos) << lsattr(f);
  EXPECT_EQ(slurp(f), "written under +S");
  chattr("-S", f);
  EXPECT_EQ(lsattr(f).find('S'), std::string::npos) << lsattr(f);
}

TEST_F(ChattrFlags, ImmutableRefusesChangesUntilCleared) {
  std::string f = path("f");
  ASSERT_EQ(write_file(f, "kept"), 0);
  chattr("+i", f);
  EXPECT_NE(lsattr(f).find('i'), std::string::npos) << lsattr(f);
  EXPECT_EQ(open_errno(f, O_WRONLY), EPERM);
  EXPECT_EQ(open_errno(f, O_WRONLY | O_APPEND), EPERM);
  EXPECT_EQ(SFS_ERRNO_OF(truncate(f.c_str(), 0)), EPERM);
  EXPECT_EQ(SFS_ERRNO_OF(chmod(f.c_str(), 0600)), EPERM);
  EXPECT_EQ(SFS_ERRNO_OF(unlink(f.c_str())), EPERM);
  EXPECT_EQ(SFS_ERRNO_OF(rename(f.c_str(), path("g").c_str())), EPERM);
  EXPECT_EQ(SFS_ERRNO_OF(link(f.c_str(), path("h").c_str())), EPERM);
  EXPECT_EQ(slurp(f), "kept");
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_NE(lsattr(f).find('i'), std::string::npos) << "after remount: " << lsattr(f);
  EXPECT_EQ(SFS_ERRNO_OF(unlink(f.c_str())), EPERM) << "after remount";
  chattr("-i", f);
  EXPECT_EQ(SFS_ERRNO_OF(unlink(f.c_str())), 0);
}

TEST_F(ChattrFlags, AppendOnlyAllowsAppendingOnly) {
  std::string f = path("f");
  ASSERT_EQ(write_file(f, "log\n"), 0);
  chattr("+a", f);
  {
    UniqueFd fd = open_fd(f, O_WRONLY | O_APPEND);
    ASSERT_GE(fd.get(), 0);
    EXPECT_EQ(write(fd.get(), "more\n", 5), 5);
  }
  EXPECT_EQ(open_errno(f, O_WRONLY), EPERM);
  EXPECT_EQ(SFS_ERRNO_OF(truncate(f.c_str(), 0)), EPERM);
  EXPECT_EQ(SFS_ERRNO_OF(unlink(f.c_str())), EPERM);
  EXPECT_EQ(SFS_ERRNO_OF(rename(f.c_str(), path("g").c_str())), EPERM);
  EXPECT_EQ(slurp(f), "log\nmore\n");
}

// The kernel keeps cached attributes across the ioctl; the daemon makes it
// drop them, so the new ctime shows at once (xfstests generic/277).
TEST_F(ChattrFlags, ChattrMovesTheCtimeSeenByStat) {
  std::string f = path("f");
  ASSERT_EQ(write_file(f, "x"), 0);
  struct timespec old = stat_of(f).st_ctim;
  chattr("+A", f);
  struct timespec now = stat_of(f).st_ctim;
  EXPECT_TRUE(now.tv_sec > old.tv_sec || (now.tv_sec == old.tv_sec && now.tv_nsec > old.tv_nsec))
      << "ctime did not move";
}

TEST_F(ChattrFlags, FsxattrCarriesTheSameFlags) {
  std::string d = path("d");
  ASSERT_EQ(mkdir(d.c_str(), 0755), 0);
  UniqueFd fd = open_fd(d, O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd.get(), 0);
  fsxattr fa{};
  ASSERT_EQ(ioctl(fd.get(), FS_IOC_FSGETXATTR, &fa), 0) << std::strerror(errno);
  EXPECT_EQ(fa.fsx_xflags, 0u);
  fa.fsx_xflags = FS_XFLAG_NOATIME | FS_XFLAG_NODUMP;
  ASSERT_EQ(ioctl(fd.get(), FS_IOC_FSSETXATTR, &fa), 0) << std::strerror(errno);
  std::string flags = lsattr(d);
  EXPECT_NE(flags.find('A'), std::string::npos) << flags;
  EXPECT_NE(flags.find('d'), std::string::npos) << flags;
  fa.fsx_xflags = FS_XFLAG_DAX;
  EXPECT_EQ(SFS_ERRNO_OF(ioctl(fd.get(), FS_IOC_FSSETXATTR, &fa)), EOPNOTSUPP);
}

}  // namespace
}  // namespace stablefs::integ
