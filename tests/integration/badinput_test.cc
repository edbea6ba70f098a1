// Bad input to the tools: each case gives one clear line on stderr and a
// non-zero exit, never a crash or a hang, and leaves the image bytes as
// they were. Also ENOSPC: a full filesystem fails cleanly and recovers.
//
// Not covered: an unreadable target. The suite runs as root, which bypasses
// permission bits, so there is no way to make the image unreadable here.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cctype>
#include <string>
#include <utility>

#include "tests/integration/image_file.h"
#include "tests/integration/mount_fixture.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {
namespace {

constexpr int kFsckOperationalError = 8;  // e2fsck's "operational error"

class BadInput : public RealMount {
 protected:
  std::string image_size() const override { return "64M"; }
  bool mount_in_setup() const override { return false; }

  // Launches the daemon and expects a clean refusal; a daemon that mounts
  // anyway is unmounted again so the test can go on.
  void expect_mount_refused(const std::string& target, const std::string& mountpoint,
                            const std::vector<std::string>& extra = {}) {
    DaemonLaunch l = launch_daemon(target, mountpoint, extra);
    if (l.mounted) {
      stop_daemon(l.pid, mountpoint);
      ADD_FAILURE() << "stablefs " << target << " " << mountpoint << " mounted; want refusal";
      return;
    }
    EXPECT_FALSE(l.timed_out) << "daemon neither mounted nor exited within 10 s";
    EXPECT_TRUE(WIFEXITED(l.status)) << describe_wait_status(l.status) << "\n" << l.log;
    EXPECT_NE(WEXITSTATUS(l.status), 0) << l.log;
    expect_one_line(l.log);
  }

  static void expect_one_line(const std::string& output) {
    auto lines = nonempty_lines(output);
    EXPECT_EQ(lines.size(), 1u) << "want one clear error line, got:\n" << output;
  }

  static void expect_refusal(const CommandResult& r) {
    EXPECT_TRUE(r.exited) << r.describe() << "\n" << r.output;
    EXPECT_NE(r.exit_code, 0) << r.output;
    expect_one_line(r.output);
  }

  static bool exists(const std::string& p) { return access(p.c_str(), F_OK) == 0; }
};

TEST_F(BadInput, MountOfMissingTargetIsRefused) {
  const std::string target = dir() + "/no-such-image";
  expect_mount_refused(target, mnt());
  EXPECT_FALSE(exists(target)) << "mounting must not create the target";
}

TEST_F(BadInput, MountOfDirectoryTargetIsRefused) {
  const std::string target = dir() + "/a-directory";
  ASSERT_EQ(mkdir(target.c_str(), 0755), 0);
  expect_mount_refused(target, mnt());
}

TEST_F(BadInput, MountOfZeroFilledFileIsRefusedAndChangesNothing) {
  const std::string target = dir() + "/zeros";
  ASSERT_EQ(truncate(image().c_str(), 0), 0);
  ASSERT_EQ(write_file(target, std::string(32 << 20, '\0')), 0);
  const uint64_t before = hash_file(target);
  expect_mount_refused(target, mnt());
  CommandResult fsck = run_command({fsck_bin(), target});
  EXPECT_TRUE(fsck.exited) << fsck.describe();
  EXPECT_EQ(fsck.exit_code, kFsckOperationalError) << "not a stablefs image:\n" << fsck.output;
  EXPECT_EQ(hash_file(target), before);
}

TEST_F(BadInput, MountOfTruncatedImageIsRefusedAndChangesNothing) {
  ASSERT_EQ(truncate(image().c_str(), 32 << 20), 0);
  const uint64_t before = hash_file(image());
  expect_mount_refused(image(), mnt());
  CommandResult fsck = run_fsck({});
  EXPECT_TRUE(fsck.exited) << fsck.describe();
  EXPECT_EQ(fsck.exit_code, kFsckOperationalError) << "a truncated image:\n" << fsck.output;
  EXPECT_EQ(hash_file(image()), before);
}

TEST_F(BadInput, PrimarySuperblockWithBadChecksumMountsFromBackupAndSaysSo) {
  ASSERT_NO_FATAL_FAILURE(mount());
  ASSERT_EQ(write_file(path("kept"), "survives"), 0);
  ASSERT_NO_FATAL_FAILURE(unmount_only());
  // Byte 4000 is inside the checksummed range but in no field, so only the
  // checksum can notice.
  ASSERT_TRUE(flip_byte(image(), kSuperblockA * kBlockSize + 4000));
  ASSERT_NO_FATAL_FAILURE(mount());
  std::string log = daemon_log();
  std::string lower = log;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  EXPECT_NE(lower.find("superblock"), std::string::npos)
      << "the fallback to the backup superblock must be logged; log:\n"
      << log;
  EXPECT_EQ(slurp(path("kept")), "survives");
  ASSERT_EQ(write_file(path("new"), "after fallback"), 0);
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(slurp(path("new")), "after fallback");
}

TEST_F(BadInput, BothSuperblocksBadIsRefusedAndChangesNothing) {
  ASSERT_TRUE(flip_byte(image(), kSuperblockA * kBlockSize + 4000));
  ASSERT_TRUE(flip_byte(image(), kSuperblockB * kBlockSize + 4000));
  const uint64_t before = hash_file(image());
  expect_mount_refused(image(), mnt());
  EXPECT_EQ(hash_file(image()), before);
}

TEST_F(BadInput, MissingMountpointIsRefusedAndChangesNothing) {
  const uint64_t before = hash_file(image());
  const std::string mp = dir() + "/no-such-dir";
  expect_mount_refused(image(), mp);
  EXPECT_FALSE(exists(mp));
  EXPECT_EQ(hash_file(image()), before);
}

TEST_F(BadInput, MountpointThatIsARegularFileIsRefused) {
  const uint64_t before = hash_file(image());
  const std::string mp = dir() + "/plain-file";
  ASSERT_EQ(write_file(mp, "x"), 0);
  expect_mount_refused(image(), mp);
  EXPECT_EQ(hash_file(image()), before);
}

// A second mount of a mounted image never starts a second daemon on it: it
// shares the first daemon's mount (stablefs(8), "A second mount of a
// mounted image"), or is refused when it asks for what only a new daemon
// could give.
TEST_F(BadInput, SecondMountOfAMountedImageStartsNoSecondDaemon) {
  ASSERT_NO_FATAL_FAILURE(mount());
  ASSERT_EQ(write_file(path("f"), "first mount"), 0);
  const std::string mnt2 = dir() + "/mnt2";
  ASSERT_EQ(mkdir(mnt2.c_str(), 0755), 0);
  expect_mount_refused(image(), mnt2, {"-o", "threads=3"});
  EXPECT_EQ(fuse_mounts_at(mnt2), 0);
  CommandResult shared = run_command({stablefs_bin(), image(), mnt2}, std::chrono::seconds(30));
  ASSERT_TRUE(shared.ok()) << shared.describe() << "\n" << shared.output;
  EXPECT_EQ(daemon_pid_serving(mnt2), daemon_pid_serving(mnt()));
  EXPECT_EQ(slurp(mnt2 + "/f"), "first mount");
  ASSERT_TRUE(run_command({"fusermount3", "-u", mnt2}).ok());
  EXPECT_EQ(slurp(path("f")), "first mount") << "the first mount is unharmed";
  ASSERT_NO_FATAL_FAILURE(unmount_only());
  CommandResult fsck = run_fsck({"--scrub"});
  EXPECT_TRUE(fsck.ok()) << fsck.describe() << "\n" << fsck.output;
}

// A loop device over the image and the image file are one filesystem: a
// daemon on either refuses a second daemon on the other at once (the
// second would write the same blocks), and so does fsck. Each takes its
// own lock otherwise (O_EXCL on the device, flock on the file).
TEST_F(BadInput, ALoopDeviceAndTheFileBoundToItAreOneImage) {
  CommandResult attach = run_command({"losetup", "--find", "--show", image()});
  ASSERT_TRUE(attach.ok()) << "losetup (loop devices needed): " << attach.output;
  const std::string loop = nonempty_lines(attach.output).at(0);
  struct Detach {
    std::string dev;
    ~Detach() { run_command({"losetup", "-d", dev}); }
  } detach{loop};
  const std::string mnt2 = dir() + "/mnt2";
  ASSERT_EQ(mkdir(mnt2.c_str(), 0755), 0);
  for (const auto& [first, second] : {std::pair{loop, image()}, std::pair{image(), loop}}) {
    SCOPED_TRACE("mounted " + first + ", then " + second);
    DaemonLaunch l = launch_daemon(first, mnt(), {});
    ASSERT_TRUE(l.mounted) << l.log;
    ASSERT_EQ(write_file(path("f"), "through " + first), 0);
    auto t0 = std::chrono::steady_clock::now();
    expect_mount_refused(second, mnt2);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5))
        << "refused at once, not after waiting for an unmount";
    EXPECT_EQ(fuse_mounts_at(mnt2), 0);
    CommandResult fsck = run_command({fsck_bin(), "-n", second});
    EXPECT_EQ(fsck.exit_code, kFsckOperationalError) << fsck.output;
    EXPECT_EQ(stop_daemon(l.pid, mnt()), 0);
  }
  CommandResult fsck = run_fsck({"--scrub"});
  EXPECT_TRUE(fsck.ok()) << fsck.describe() << "\n" << fsck.output;
}

TEST_F(BadInput, FsckOfMountedImageIsRefused) {
  ASSERT_NO_FATAL_FAILURE(mount());
  ASSERT_EQ(write_file(path("f"), "x"), 0);
  const uint64_t before = hash_file(image());
  for (const char* flag : {"-n", "--scrub"}) {
    CommandResult fsck = run_fsck({flag});
    EXPECT_TRUE(fsck.exited) << fsck.describe();
    // Refused: exit 8 (cannot open: in use), not 4 (checked, errors found).
    EXPECT_EQ(fsck.exit_code, kFsckOperationalError)
        << "fsck " << flag << " of an image in use must refuse to check it:\n" << fsck.output;
    EXPECT_NE(fsck.output.find("in use"), std::string::npos) << fsck.output;
  }
  EXPECT_EQ(hash_file(image()), before) << "the refused fsck wrote nothing";
}

TEST_F(BadInput, MountOnABusyMountpointIsRefused) {
  ASSERT_NO_FATAL_FAILURE(mount());
  const std::string other = dir() + "/other-image";
  ASSERT_TRUE(run_mkfs({"--size", "32M", other}).ok());
  const uint64_t before = hash_file(other);
  expect_mount_refused(other, mnt());
  EXPECT_EQ(fuse_mounts_at(mnt()), 1) << "nothing stacked on the first mount";
  EXPECT_EQ(hash_file(other), before);
}

TEST_F(BadInput, UnknownMountOptionIsRefusedAndChangesNothing) {
  const uint64_t before = hash_file(image());
  expect_mount_refused(image(), mnt(), {"-o", "no_such_option"});
  expect_mount_refused(image(), mnt(), {"-o", "cache_size=lots"});
  EXPECT_EQ(hash_file(image()), before);
}

TEST_F(BadInput, BogusStablePagesModeIsRefused) {
  const uint64_t before = hash_file(image());
  expect_mount_refused(image(), mnt(), {"-o", "stable_pages=bogus"});
  EXPECT_EQ(hash_file(image()), before);
}

TEST_F(BadInput, EveryDocumentedMountOptionIsAccepted) {
  for (const char* opts :
       {"stable_pages=wait", "stable_pages=shadow", "stable_pages=bounce", "stable_pages=off",
        "cache_size=16M,commit=1,verify_writes", "writeback_cache", "rw,noatime"}) {
    DaemonLaunch l = launch_daemon(image(), mnt(), {"-o", opts});
    ASSERT_TRUE(l.mounted) << "-o " << opts << ": " << describe_wait_status(l.status) << "\n"
                           << l.log;
    ASSERT_EQ(write_file(path(std::string("f-") + opts), opts), 0);
    EXPECT_EQ(slurp(path(std::string("f-") + opts)), opts);
    int status = stop_daemon(l.pid, mnt());
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "-o " << opts << ": " << describe_wait_status(status);
  }
}

TEST_F(BadInput, MkfsWithTooSmallSizeIsRefusedAndCreatesNothing) {
  const std::string target = dir() + "/tiny";
  expect_refusal(run_mkfs({"--size", "8M", target}));
  EXPECT_FALSE(exists(target));
  // A malformed size is a usage error: usage text may follow, but the first
  // line must say what was wrong.
  CommandResult bad = run_mkfs({"--size", "12Q", target});
  EXPECT_TRUE(bad.exited && bad.exit_code != 0) << bad.describe() << "\n" << bad.output;
  auto lines = nonempty_lines(bad.output);
  ASSERT_FALSE(lines.empty());
  EXPECT_NE(lines[0].find("12Q"), std::string::npos) << lines[0];
  EXPECT_FALSE(exists(target));
  EXPECT_TRUE(run_mkfs({"--size", "16M", target}).ok()) << "16 MiB is the documented minimum";
}

TEST_F(BadInput, MkfsRefusesToOverwriteAStablefsWithoutForce) {
  const uint64_t before = hash_file(image());
  expect_refusal(run_mkfs({image()}));
  EXPECT_EQ(hash_file(image()), before);
  CommandResult forced = run_mkfs({"--force", image()});
  EXPECT_TRUE(forced.ok()) << forced.describe() << "\n" << forced.output;
  EXPECT_NE(hash_file(image()), before) << "a new filesystem (new uuid) was written";
}

TEST_F(BadInput, EveryToolAnswersHelpWithUsage) {
  for (const char* tool : {stablefs_bin(), mkfs_bin(), fsck_bin()}) {
    CommandResult r = run_command({tool, "--help"}, std::chrono::seconds(10));
    EXPECT_TRUE(r.ok()) << tool << " --help: " << r.describe() << "\n" << r.output;
    std::string lower = r.output;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    EXPECT_NE(lower.find("usage"), std::string::npos) << tool << " --help:\n" << r.output;
  }
}

TEST_F(BadInput, FreshImageChecksClean) {
  CommandResult fsck = run_fsck({});
  EXPECT_TRUE(fsck.ok()) << fsck.describe() << "\n" << fsck.output;
  CommandResult scrub = run_fsck({"--scrub"});
  EXPECT_TRUE(scrub.ok()) << scrub.describe() << "\n" << scrub.output;
}

TEST_F(BadInput, FillingTheFilesystemGivesENOSPCAndItRecovers) {
  ASSERT_NO_FATAL_FAILURE(mount());
  const std::string chunk(1 << 20, 'F');
  struct statfs empty;  // once "fill" has its entry, before it has data
  int seen = 0;
  std::string where = "nowhere";
  {
    UniqueFd fd = open_fd(path("fill"), O_WRONLY | O_CREAT);
    ASSERT_TRUE(fd.ok());
    ASSERT_EQ(statfs(mnt().c_str(), &empty), 0);
    // 64M image: 128 MiB of writes must run out of space somewhere, and the
    // error must reach the writer by write, fsync or close at the latest.
    for (int i = 0; i < 128 && seen == 0; ++i) {
      ssize_t n = write(fd.get(), chunk.data(), chunk.size());
      if (n < 0) {
        seen = errno;
        where = "write #" + std::to_string(i);
      }
    }
    if (seen == 0 && fsync(fd.get()) != 0) {
      seen = errno;
      where = "fsync";
    }
    int raw = fd.release();
    if (close(raw) != 0 && seen == 0) {
      seen = errno;
      where = "close";
    }
  }
  EXPECT_EQ(seen, ENOSPC) << "got errno " << seen << " (" << strerror(seen) << ") at " << where
                          << "; 128 MiB written to a 64 MiB filesystem";
  struct statfs full;
  ASSERT_EQ(statfs(mnt().c_str(), &full), 0);
  ASSERT_EQ(unlink(path("fill").c_str()), 0);
  struct statfs freed;
  // The kernel's FORGET frees the inode after unlink returns, in several
  // bounded handles; once it is gone every block it held is free again, as
  // on the empty filesystem (statfs counts frees not yet committed as
  // free). The deadline only turns a lost FORGET into a failure.
  bool was_freed = wait_until(
      [&] { return statfs(mnt().c_str(), &freed) == 0 && freed.f_bfree >= empty.f_bfree; },
      std::chrono::seconds(30));
  EXPECT_TRUE(was_freed) << "deleting the file frees all its blocks: free " << empty.f_bfree
                         << " when empty, " << full.f_bfree << " when full, " << freed.f_bfree
                         << " 30 s after the unlink, of " << freed.f_blocks;

  const std::string after(8 << 20, 'A');
  EXPECT_EQ(write_file(path("after"), after), 0) << "the filesystem is usable again";
  {
    UniqueFd fd = open_fd(path("after"), O_RDONLY);
    EXPECT_EQ(SFS_ERRNO_OF(fsync(fd.get())), 0) << "fsync of a new 8 MiB file after ENOSPC";
  }
  struct statfs used;
  ASSERT_EQ(statfs(mnt().c_str(), &used), 0);
  EXPECT_LE(used.f_bfree + 2048, freed.f_bfree) << "the new file's 2048 blocks are allocated: free "
                                                << freed.f_bfree << " -> " << used.f_bfree;
  ASSERT_EQ(mkdir(path("newdir").c_str(), 0755), 0);
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_TRUE(same_bytes(slurp(path("after")), after))
      << "contents of the file written after ENOSPC";
  ASSERT_NO_FATAL_FAILURE(unmount_only());
  CommandResult fsck = run_fsck({"--scrub"});
  EXPECT_TRUE(fsck.ok()) << "consistent after ENOSPC: " << fsck.describe() << "\n" << fsck.output;
}

}  // namespace
}  // namespace stablefs::integ
