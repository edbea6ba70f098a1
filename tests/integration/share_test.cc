// A second mount of an image that a daemon already serves shares that
// daemon's mount, as a second mount of a block device shares the kernel
// filesystem's superblock (tools/share_mount.h): no second daemon, the
// same files through both, each mount with its own read-only flag, and
// the daemon lets go of the image only when the last mount is gone.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "tests/integration/mount_fixture.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {
namespace {

class ShareMount : public RealMount {
 protected:
  std::string image_size() const override { return "256M"; }
  bool mount_in_setup() const override { return false; }

  // The fixture's mount, with its daemon's pid (ours to reap).
  void mount_first(const std::vector<std::string>& extra = {}) {
    DaemonLaunch l = launch_daemon(image(), mnt(), extra);
    ASSERT_TRUE(l.mounted) << "first mount: " << l.log;
    daemon_ = l.pid;
  }

  std::string new_dir(const std::string& name) {
    std::string d = dir() + "/" + name;
    EXPECT_EQ(::mkdir(d.c_str(), 0755), 0) << d;
    return d;
  }

  pid_t daemon_ = -1;
};

// `stablefs TARGET MOUNTPOINT OPTIONS...` as mount.fuse3 runs it (in the
// background, no -f): for a served image it returns at once.
CommandResult mount_again(const std::string& target, const std::string& mountpoint,
                          const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv = {stablefs_bin(), target, mountpoint};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return run_command(argv, std::chrono::seconds(30));
}

bool still_running(pid_t pid) {
  int status;
  return ::waitpid(pid, &status, WNOHANG) == 0;
}

// True while `pid` sits in openat(2) on a directory fd, not AT_FDCWD: in the
// sharing helper, only its open of the cloned mount's root does that, a
// FUSE OPENDIR that waits for the daemon (proc(5), /proc/PID/syscall).
bool in_openat_on_a_dirfd(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/syscall");
  long nr = -1;
  std::string arg0;
  if (!(in >> nr >> arg0) || nr != SYS_openat) return false;
  // The register holds AT_FDCWD (-100) as an unsigned 64-bit value.
  return std::stoull(arg0, nullptr, 16) != uint64_t(int64_t(AT_FDCWD));
}

// Starts `stablefs TARGET MOUNTPOINT -f` (no fork, so `pid` is the helper
// itself) while the daemon of the first mount is stopped, and waits until
// the helper is blocked asking that mount: the window between finding the
// mount and attaching it, held open.
pid_t start_share_held_at_the_daemon(const std::string& target, const std::string& mountpoint,
                                     const std::string& log, pid_t stopped_daemon) {
  pid_t helper = spawn_logged({stablefs_bin(), target, mountpoint, "-f"}, log);
  EXPECT_GT(helper, 0);
  bool held = wait_until([&] { return in_openat_on_a_dirfd(helper); }, std::chrono::seconds(20));
  EXPECT_TRUE(held) << "the helper never blocked on the stopped daemon " << stopped_daemon
                    << "\n" << read_file(log);
  return helper;
}

int rename_errno(const std::string& from, const std::string& to) {
  return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
}

TEST_F(ShareMount, SecondMountSharesTheDaemonUntilTheLastUnmount) {
  ASSERT_NO_FATAL_FAILURE(mount_first());
  const std::string second = new_dir("second");
  CommandResult r = mount_again(image(), second);
  ASSERT_TRUE(r.ok()) << r.describe() << "\n" << r.output;
  EXPECT_NE(r.output.find("shares"), std::string::npos) << r.output;
  ASSERT_EQ(fuse_mounts_at(second), 1);
  EXPECT_EQ(daemon_pid_serving(second), long(daemon_));
  EXPECT_EQ(daemon_pid_serving(mnt()), long(daemon_));
  // The daemon's counters, named after the first mount, through the second.
  CommandResult stat = run_command({STAT_BIN, second});
  EXPECT_TRUE(stat.ok()) << stat.output;
  EXPECT_NE(stat.output.find("(pid " + std::to_string(daemon_) + ")"), std::string::npos)
      << stat.output;

  // generic/732's steps: renames within each mount, seen through the other.
  ASSERT_EQ(::mkdir(path("A").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(path("B").c_str(), 0755), 0);
  ASSERT_EQ(write_file(path("A/f"), "seven"), 0);
  ASSERT_EQ(rename_errno(path("A/f"), path("B/f")), 0);
  EXPECT_EQ(slurp(second + "/B/f"), "seven");
  ASSERT_EQ(rename_errno(second + "/B/f", second + "/A/f"), 0);
  EXPECT_EQ(slurp(path("A/f")), "seven");
  ASSERT_EQ(rename_errno(path("A/f"), path("B/f")), 0);
  EXPECT_EQ(open_errno(second + "/A/f", O_RDONLY), ENOENT);
  // Across the two mounts it is EXDEV, as between any two mounts.
  EXPECT_EQ(rename_errno(path("B/f"), second + "/A/f"), EXDEV);

  // Unmounting the first leaves the second served by the same daemon.
  CommandResult u = run_command({"fusermount3", "-u", mnt()});
  ASSERT_TRUE(u.ok()) << u.output;
  EXPECT_EQ(fuse_mounts_at(mnt()), 0);
  EXPECT_TRUE(still_running(daemon_)) << "the daemon exited with a mount still using it";
  const std::string kept(100000, 'k');
  ASSERT_EQ(write_file(second + "/kept", kept), 0);
  {
    UniqueFd f = open_fd(second + "/kept", O_RDWR);
    ASSERT_TRUE(f.ok());
    ASSERT_EQ(::fsync(f.get()), 0);
  }
  EXPECT_TRUE(same_bytes(slurp(second + "/kept"), kept));
  EXPECT_EQ(slurp(second + "/B/f"), "seven");

  // The last unmount ends the daemon, cleanly, and frees the image.
  int status = stop_daemon(daemon_, second);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << describe_wait_status(status);
  CommandResult fsck = run_fsck({});
  EXPECT_TRUE(fsck.ok()) << fsck.output;
  EXPECT_NE(fsck.output.find("clean"), std::string::npos) << fsck.output;

  // A fresh mount sees everything written through both.
  ASSERT_NO_FATAL_FAILURE(mount_first());
  EXPECT_TRUE(same_bytes(slurp(path("kept")), kept));
  EXPECT_EQ(slurp(path("B/f")), "seven");
}

TEST_F(ShareMount, ReadOnlySecondMountIsReadOnlyAlone) {
  ASSERT_NO_FATAL_FAILURE(mount_first());
  const std::string ro = new_dir("ro");
  CommandResult r = mount_again(image(), ro, {"-o", "ro"});
  ASSERT_TRUE(r.ok()) << r.describe() << "\n" << r.output;
  ASSERT_EQ(fuse_mounts_at(ro), 1);

  struct statvfs sv {};
  ASSERT_EQ(::statvfs(ro.c_str(), &sv), 0);
  EXPECT_TRUE(sv.f_flag & ST_RDONLY);
  ASSERT_EQ(::statvfs(mnt().c_str(), &sv), 0);
  EXPECT_FALSE(sv.f_flag & ST_RDONLY);

  EXPECT_EQ(write_file(ro + "/nope", "x"), EROFS);
  ASSERT_EQ(write_file(path("yes"), "written"), 0);
  EXPECT_EQ(slurp(ro + "/yes"), "written");
  EXPECT_EQ(open_errno(ro + "/yes", O_WRONLY), EROFS);

  // umount(8) as well as fusermount3 takes a shared mount down.
  CommandResult u = run_command({"umount", ro});
  ASSERT_TRUE(u.ok()) << u.output;
  EXPECT_EQ(fuse_mounts_at(ro), 0);
  EXPECT_TRUE(still_running(daemon_));
  EXPECT_EQ(write_file(path("after"), "still"), 0);
  int status = stop_daemon(daemon_, mnt());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << describe_wait_status(status);
}

TEST_F(ShareMount, OptionsOnlyANewDaemonCouldHonourMustMatch) {
  ASSERT_NO_FATAL_FAILURE(mount_first({"-o", "cache_size=64M"}));
  const std::string second = new_dir("second");

  CommandResult differs = mount_again(image(), second, {"-o", "cache_size=128M,verify_writes"});
  EXPECT_EQ(differs.exit_code, 1) << differs.output;
  EXPECT_NE(differs.output.find("cache_size=134217728"), std::string::npos) << differs.output;
  EXPECT_NE(differs.output.find("verify_writes=on"), std::string::npos) << differs.output;
  EXPECT_EQ(fuse_mounts_at(second), 0);

  // The daemon's own values, or none, and per-mount flags, are fine.
  CommandResult same = mount_again(image(), second, {"-o", "cache_size=64M,nosuid,noexec"});
  ASSERT_TRUE(same.ok()) << same.output;
  EXPECT_EQ(daemon_pid_serving(second), long(daemon_));
  ASSERT_TRUE(run_command({"umount", second}).ok());
  int status = stop_daemon(daemon_, mnt());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << describe_wait_status(status);
}

TEST_F(ShareMount, ReadWriteMountOfAReadOnlyDaemonIsRefused) {
  ASSERT_NO_FATAL_FAILURE(mount_first({"-o", "ro"}));
  const std::string second = new_dir("second");
  CommandResult rw = mount_again(image(), second);
  EXPECT_EQ(rw.exit_code, 1) << rw.output;
  EXPECT_NE(rw.output.find("read-only"), std::string::npos) << rw.output;
  EXPECT_EQ(fuse_mounts_at(second), 0);
  CommandResult ro = mount_again(image(), second, {"-o", "ro"});
  ASSERT_TRUE(ro.ok()) << ro.output;
  EXPECT_EQ(daemon_pid_serving(second), long(daemon_));
  // Nor can the shared mount be remounted read-write (the helper reads the
  // daemon's state from the counters of the mount it was started on).
  CommandResult remount = mount_again(image(), second, {"-o", "remount,rw"});
  EXPECT_EQ(remount.exit_code, 1) << remount.output;
  EXPECT_NE(remount.output.find("read-only"), std::string::npos) << remount.output;
}

// Two images named alike in two directories are two filesystems, and a
// hard link to an image is the same one: identity is the inode, not the
// path.
TEST_F(ShareMount, TheSameImageIsFoundByInodeNotByName) {
  ASSERT_NO_FATAL_FAILURE(mount_first());
  const std::string other_dir = new_dir("other");
  const std::string other = other_dir + "/" + image().substr(image().rfind('/') + 1);
  CommandResult mk = run_mkfs({"--size", "256M", other});
  ASSERT_TRUE(mk.ok()) << mk.output;
  const std::string link = other_dir + "/hardlink";
  ASSERT_EQ(::link(other.c_str(), link.c_str()), 0);

  const std::string second = new_dir("second");
  DaemonLaunch own = launch_daemon(other, second, {});
  ASSERT_TRUE(own.mounted) << own.log;
  EXPECT_EQ(daemon_pid_serving(second), long(own.pid));
  ASSERT_EQ(write_file(second + "/only-in-other", "o"), 0);

  // Through the hard link: the mount of `other`, not the first one that
  // mountinfo lists (the fixture's image).
  const std::string third = new_dir("third");
  CommandResult r = mount_again(link, third);
  ASSERT_TRUE(r.ok()) << r.describe() << "\n" << r.output;
  EXPECT_EQ(daemon_pid_serving(third), long(own.pid));
  EXPECT_EQ(slurp(third + "/only-in-other"), "o");
  EXPECT_EQ(open_errno(path("only-in-other"), O_RDONLY), ENOENT);

  ASSERT_TRUE(run_command({"fusermount3", "-u", third}).ok());
  int status = stop_daemon(own.pid, second);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << describe_wait_status(status);
  status = stop_daemon(daemon_, mnt());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << describe_wait_status(status);
}

// The first mount is unmounted after the helper found it and before it is
// attached: the helper holds a detached copy of it, so the daemon keeps
// serving and the second mount shares it, never the directory that was
// under the first.
TEST_F(ShareMount, FirstMountUnmountedDuringTheShareIsStillShared) {
  ASSERT_NO_FATAL_FAILURE(mount_first());
  ASSERT_EQ(write_file(path("before"), "b"), 0);
  const std::string second = new_dir("second");
  ASSERT_EQ(::kill(daemon_, SIGSTOP), 0);
  pid_t helper = start_share_held_at_the_daemon(image(), second, dir() + "/helper.log", daemon_);
  // Only the mount goes: the helper's copy still holds the superblock, so
  // the kernel sends the stopped daemon nothing. umount(2) itself, since
  // umount(8) first stats the mount point, which would wait for the daemon.
  EXPECT_EQ(::umount2(mnt().c_str(), 0), 0) << strerror(errno);
  ASSERT_EQ(::kill(daemon_, SIGCONT), 0);
  int hs = 0;
  ASSERT_TRUE(wait_with_deadline(helper, std::chrono::seconds(30), &hs));
  ASSERT_TRUE(WIFEXITED(hs) && WEXITSTATUS(hs) == 0)
      << describe_wait_status(hs) << "\n" << read_file(dir() + "/helper.log");
  EXPECT_EQ(fuse_mounts_at(mnt()), 0);
  EXPECT_EQ(daemon_pid_serving(second), long(daemon_));
  EXPECT_EQ(slurp(second + "/before"), "b");
  int status = stop_daemon(daemon_, second);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << describe_wait_status(status);
  CommandResult fsck = run_fsck({});
  EXPECT_TRUE(fsck.ok()) << fsck.output;
}

// The daemon dies while the helper is asking it: the second mount is
// refused as "in use" (the dead first mount is still there) and nothing
// is left mounted on the second mount point.
TEST_F(ShareMount, DaemonDyingDuringTheShareLeavesNoMount) {
  ASSERT_NO_FATAL_FAILURE(mount_first());
  const std::string second = new_dir("second");
  ASSERT_EQ(::kill(daemon_, SIGSTOP), 0);
  pid_t helper = start_share_held_at_the_daemon(image(), second, dir() + "/helper.log", daemon_);
  ASSERT_EQ(::kill(daemon_, SIGKILL), 0);
  int hs = 0;
  ASSERT_TRUE(wait_with_deadline(helper, std::chrono::seconds(60), &hs));
  EXPECT_TRUE(WIFEXITED(hs) && WEXITSTATUS(hs) == 1)
      << describe_wait_status(hs) << "\n" << read_file(dir() + "/helper.log");
  EXPECT_NE(read_file(dir() + "/helper.log").find("in use"), std::string::npos)
      << read_file(dir() + "/helper.log");
  EXPECT_EQ(fuse_mounts_at(second), 0);
  // Reaps the killed daemon and takes its dead mount down.
  int status = stop_daemon(daemon_, mnt());
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << describe_wait_status(status);
  EXPECT_EQ(fuse_mounts_at(mnt()), 0);
}

}  // namespace
}  // namespace stablefs::integ
