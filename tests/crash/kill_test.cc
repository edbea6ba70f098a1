// Process-kill tests: a mixed workload runs in a child process against a
// live `stablefs IMG MNT -f`; the daemon (only its pid) is SIGKILLed after
// a seeded number of the child's operations, the dead mount is lazily
// unmounted, and then: fsck --scrub of a copy of the image must be clean
// (it replays the journal itself, exit 0 or 1), the daemon must mount the image again
// (replaying it), every file whose fsync completed before the kill must
// hold its fsync'd content, and every file must read without error.
//
// KILL_TEST_KILLS=N sets the number of kills (default 50, the CI run).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include <gtest/gtest.h>

#include "tests/crash/kill_workload.h"
#include "tests/integration/mount_fixture.h"
#include "tests/integration/test_util.h"

namespace stablefs::crash {
namespace {

using integ::CommandResult;

int kills_wanted() {
  const char* k = std::getenv("KILL_TEST_KILLS");
  return k != nullptr && std::atoi(k) > 0 ? std::atoi(k) : 50;
}

// The fixture's temp dir, image (mkfs'd in SetUp) and teardown, but the
// daemons here are started and killed by the test itself.
class KillTest : public integ::RealMount {
 protected:
  std::string image_size() const override { return "48M"; }
  bool mount_in_setup() const override { return false; }

  // Starts the daemon on image() and waits for the mount. -1 on failure
  // (with the reason in *why).
  pid_t start_daemon(std::string* why) {
    std::string log = dir() + "/daemon.log";
    std::vector<std::string> argv = {integ::stablefs_bin(), image(), mnt(), "-f"};
    if (!mount_options().empty()) argv.insert(argv.end(), {"-o", mount_options()});
    const int before = integ::fuse_mounts_at(mnt());
    pid_t pid = integ::spawn_logged(argv, log);
    if (pid < 0) {
      *why = "cannot start the daemon";
      return -1;
    }
    // Polls two external events (mount appears, daemon exits) against a
    // deadline; nothing depends on the interval.
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
      int status;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        *why = "daemon " + integ::describe_wait_status(status) + "\n" + integ::read_file(log);
        return -1;
      }
      if (integ::fuse_mounts_at(mnt()) > before) return pid;
      if (std::chrono::steady_clock::now() >= end) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        *why = "no mount within 10 s\n" + integ::read_file(log);
        return -1;
      }
      usleep(2000);
    }
  }

  void lazy_unmount() {
    integ::run_command({"fusermount3", "-uz", mnt()}, std::chrono::seconds(30));
  }

  // Reads every regular file under p; "" or the first failure.
  // 0 or the errno of the first failing read(2); never stops at a short read.
  static int read_whole(const std::string& path, std::string* out) {
    integ::UniqueFd fd = integ::open_fd(path, O_RDONLY);
    if (!fd.ok()) return errno;
    out->clear();
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n < 0) return errno;
      if (n == 0) return 0;
      out->append(buf, size_t(n));
    }
  }
  static int read_link(const std::string& path, std::string* out) {
    char buf[8192];
    ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
    if (n < 0) return errno;
    out->assign(buf, size_t(n));
    return 0;
  }
  // Reads every file and symlink under p: a referenced block that fails
  // its checksum, or a symlink that lost its target, is reported.
  static std::string read_all(const std::filesystem::path& p) {
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(p, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      std::string got;
      if (it->is_symlink()) {
        if (int e = read_link(it->path(), &got); e != 0)
          return "readlink " + it->path().string() + ": " + strerror(e);
        struct stat st;
        if (lstat(it->path().c_str(), &st) != 0 || st.st_size != off_t(got.size()) || got.empty())
          return "symlink " + it->path().string() + " lost its target";
        continue;
      }
      if (!it->is_regular_file()) continue;
      if (int e = read_whole(it->path(), &got); e != 0)
        return "cannot read " + it->path().string() + ": " + strerror(e);
    }
    return ec ? "cannot walk " + p.string() + ": " + ec.message() : "";
  }
};

TEST_F(KillTest, FsyncedDataSurvivesKillNineOfTheDaemon) {
  const int kills = kills_wanted();
  std::mt19937_64 rng(0x4b111);
  std::string why;
  pid_t daemon = start_daemon(&why);
  ASSERT_GT(daemon, 0) << why;
  uint64_t records = 0, files_checked = 0, bytes_checked = 0;
  std::string failures;
  int failed_rounds = 0;

  for (int round = 0; round < kills; round++) {
    const std::string rdir = "r" + std::to_string(round);
    const std::string root = mnt() + "/" + rdir;
    ASSERT_EQ(::mkdir(root.c_str(), 0755), 0) << root << ": " << strerror(errno);
    const std::string journal = dir() + "/journal-" + std::to_string(round);
    const uint64_t seed = rng();
    const int ops_before_kill = 1 + int(rng() % 120);

    int progress[2];
    ASSERT_EQ(pipe(progress), 0);
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      close(progress[0]);
      run_kill_workload(root, journal, seed, progress[1]);
    }
    close(progress[1]);
    // Kill after the child finished `ops_before_kill` operations, while it
    // is inside the next one.
    int seen = 0;
    char buf[64];
    while (seen < ops_before_kill) {
      ssize_t n = read(progress[0], buf, std::min<int>(sizeof buf, ops_before_kill - seen));
      if (n <= 0) break;  // the child died early: checked below
      seen += int(n);
    }
    ASSERT_EQ(kill(daemon, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(daemon, &status, 0), daemon);
    lazy_unmount();
    close(progress[0]);
    int cstatus = 0;
    if (!integ::wait_with_deadline(child, std::chrono::seconds(30), &cstatus)) {
      kill(child, SIGKILL);
      waitpid(child, &cstatus, 0);
      FAIL() << "round " << round << ": the workload did not notice the dead daemon";
    }
    ASSERT_TRUE(WIFEXITED(cstatus) && WEXITSTATUS(cstatus) == 0)
        << "round " << round << ": workload " << integ::describe_wait_status(cstatus);
    ASSERT_EQ(seen, ops_before_kill) << "round " << round << ": workload stopped early";

    // fsck replays the journal in place: check a copy, mount the original
    // so the daemon's own replay is exercised too. An NBD export (INTEG_NBD)
    // has no copy to take: fsck replays it in place, before the mount.
    std::string checked = image();
    if (nbd_server() == nullptr) {
      checked = dir() + "/fsck-copy";
      std::filesystem::copy_file(image(), checked,
                                 std::filesystem::copy_options::overwrite_existing);
    }
    CommandResult fsck = integ::run_command({integ::fsck_bin(), "--scrub", checked},
                                            std::chrono::seconds(120));
    // Exit 1: the journal was replayed (a correction) and nothing is left.
    std::string round_fail;
    if (!fsck.exited || (fsck.exit_code != 0 && fsck.exit_code != 1))
      round_fail += "\n fsck --scrub: " + fsck.describe() + "\n" + fsck.output;

    daemon = start_daemon(&why);
    ASSERT_GT(daemon, 0) << "round " << round << ": remount after kill failed: " << why;

    uint64_t n = 0;
    auto durable = durable_files(integ::read_file(journal), &n);
    records += n;
    for (const auto& [path, want] : durable) {
      std::string got;
      int e = want.symlink ? read_link(root + "/" + path, &got) : read_whole(root + "/" + path, &got);
      files_checked++;
      bytes_checked += want.size;
      if (e != 0) {
        round_fail += "\n " + path + ": cannot read: " + strerror(e);
      } else if (got.size() != want.size || content_hash(got) != want.hash) {
        round_fail += "\n " + path + ": fsync'd " + std::to_string(want.size) +
                      " bytes, found " + std::to_string(got.size()) +
                      (got.size() == want.size ? " bytes with other content" : " bytes");
      }
    }
    std::string r = read_all(root);
    if (!r.empty()) round_fail += "\n " + r;
    if (!round_fail.empty()) {
      failed_rounds++;
      if (failures.size() < 8000)
        failures += "\nround " + std::to_string(round) + " (seed " + std::to_string(seed) +
                    ", kill after " + std::to_string(ops_before_kill) + " ops):" + round_fail;
    }
    // Keep the image small; the next round starts from this state.
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
    ASSERT_FALSE(ec) << "round " << round << ": cleaning " << root << ": " << ec.message();
  }

  std::printf("[kill-test] %d kills of the daemon; %d rounds failed; %llu fsync records, %llu "
              "durable files / %llu bytes verified after remount\n",
              kills, failed_rounds, (unsigned long long)records,
              (unsigned long long)files_checked, (unsigned long long)bytes_checked);
  std::fflush(stdout);
  EXPECT_EQ(failed_rounds, 0) << failures;
  EXPECT_GT(files_checked, 0u);

  // A clean unmount at the end, and a clean fsck of the result.
  CommandResult u = integ::run_command({"fusermount3", "-u", mnt()}, std::chrono::seconds(30));
  EXPECT_TRUE(u.ok()) << u.output;
  int status = 0;
  ASSERT_TRUE(integ::wait_with_deadline(daemon, std::chrono::seconds(60), &status));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << integ::describe_wait_status(status);
  CommandResult fsck = run_fsck({"--scrub"});
  EXPECT_TRUE(fsck.ok()) << fsck.describe() << "\n" << fsck.output;
}

}  // namespace
}  // namespace stablefs::crash
