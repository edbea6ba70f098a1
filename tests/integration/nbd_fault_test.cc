// Faults of an NBD server under a mounted stablefs: what the application
// sees when the server fails reads, writes or flushes (nbdkit's error
// filter, and an eval-plugin export for flushes, which 1.32's error filter
// cannot fail), or dies; and that every fsync'd byte survives, the image
// checks clean and a remount works once the server is healthy again.
//
// Each test makes the filesystem with mkfs on a plain image file, serves
// that file with nbdkit on a unix socket in the temp dir, and mounts the
// URI. Errors start when the test creates the filter's trigger file.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/integration/mount_fixture.h"
#include "tests/integration/nbd_mount.h"
#include "tests/integration/nbd_server.h"
#include "tests/integration/process.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {
namespace {

class NbdFaults : public NbdMount {
 protected:
  std::string trigger() const { return dir() + "/fail-now"; }

  void serve_with_error_filter(const std::string& which) {
    serve({"--filter=error", "file", image(), "error=EIO", which + "-rate=1",
           which + "-file=" + trigger()});
  }

  void set_trigger(bool on) {
    if (on) ASSERT_EQ(write_file(trigger(), ""), 0);
    else ASSERT_EQ(::unlink(trigger().c_str()), 0);
  }

  // After a fault, with the server healthy again and nothing mounted: fsck
  // replays the journal (a correction, exit 1, and nothing worse), a mount
  // finds `name` holding `data`, and the image scrubs clean.
  void expect_recovered(const std::string& name, const std::string& data) {
    CommandResult c = fsck({});
    EXPECT_LE(c.exit_code, 1) << "fsck after the fault: " << c.describe() << "\n" << c.output;
    ASSERT_NO_FATAL_FAILURE(mount_nbd());
    EXPECT_TRUE(same_bytes(slurp(path(name)), data));
    EXPECT_EQ(WEXITSTATUS(unmount_nbd()), 0) << log();
    c = fsck({"--scrub"});
    EXPECT_TRUE(c.ok()) << "fsck --scrub: " << c.describe() << "\n" << c.output;
  }
};

// A counter of the live mount, read by another process (stablefs-stat).
int64_t stat_counter(const std::string& mnt, const std::string& name) {
  CommandResult st = run_command({STAT_BIN, "--json", mnt}, std::chrono::seconds(20));
  EXPECT_TRUE(st.ok()) << st.describe() << ": " << st.output;
  const std::string key = "\"" + name + "\":";
  auto at = st.output.find(key);
  EXPECT_NE(at, std::string::npos) << name << " missing from " << st.output;
  return at == std::string::npos ? -1 : std::stoll(st.output.substr(at + key.size()));
}

// Waits (bounded) until a refreshed counter reaches at least `min`.
bool counter_reaches(const std::string& mnt, const std::string& name, int64_t min) {
  return wait_until([&] { return stat_counter(mnt, name) >= min; }, std::chrono::seconds(5));
}

// Over NBD, short rewrites go through the journal (journal_data=, one
// request and a flush per fsync instead of two requests): the counter says
// so, and a kill -9 right after the fsyncs loses none of it.
TEST_F(NbdFaults, RewritesGoThroughTheJournalAndSurviveAKill) {
  ASSERT_NO_FATAL_FAILURE(serve({"file", image()}));
  ASSERT_NO_FATAL_FAILURE(mount_nbd());
  std::string data = pattern(64 * 1024, 'j');
  ASSERT_EQ(write_and_fsync(path("f"), data), 0);
  UniqueFd fd = open_fd(path("f"), O_WRONLY);
  ASSERT_TRUE(fd.ok()) << strerror(errno);
  for (size_t page : {3, 9, 10}) {
    std::string p = pattern(4096, char('a' + page));
    ASSERT_EQ(::pwrite(fd.get(), p.data(), p.size(), off_t(page * 4096)), ssize_t(p.size()));
    ASSERT_EQ(::fsync(fd.get()), 0) << strerror(errno);
    data.replace(page * 4096, 4096, p);
  }
  fd.reset();
  EXPECT_GE(stat_counter(mnt(), "journaled_data_blocks"), 3);
  // Each rewrite's checksum table entry went into the log as a delta.
  EXPECT_TRUE(counter_reaches(mnt(), "journal_deltas", 3)) << stat_counter(mnt(), "journal_deltas");

  ASSERT_EQ(::kill(pid_, SIGKILL), 0);
  int status = 0;
  ASSERT_TRUE(wait_with_deadline(pid_, std::chrono::seconds(30), &status));
  pid_ = -1;
  run_command({"fusermount3", "-uz", mnt()}, std::chrono::seconds(30));
  ASSERT_NO_FATAL_FAILURE(expect_recovered("f", data));
}

TEST_F(NbdFaults, ServerReadErrorReachesTheReaderAsEio) {
  ASSERT_NO_FATAL_FAILURE(serve_with_error_filter("error-pread"));
  ASSERT_NO_FATAL_FAILURE(mount_nbd());
  const std::string data = pattern(256 * 1024, 'r');
  ASSERT_EQ(write_and_fsync(path("f"), data), 0);
  // A fresh mount, so the bytes must come from the server.
  EXPECT_EQ(WEXITSTATUS(unmount_nbd()), 0);
  ASSERT_NO_FATAL_FAILURE(mount_nbd());
  UniqueFd fd = open_fd(path("f"), O_RDONLY);
  ASSERT_TRUE(fd.ok()) << strerror(errno);

  ASSERT_NO_FATAL_FAILURE(set_trigger(true));
  std::string buf(data.size(), '\0');
  EXPECT_EQ(SFS_ERRNO_OF(::pread(fd.get(), buf.data(), buf.size(), 0)), EIO);
  ASSERT_NO_FATAL_FAILURE(set_trigger(false));
  EXPECT_TRUE(counter_reaches(mnt(), "device_read_errors", 1));
  // The error was the server's, of that moment: nothing is poisoned.
  EXPECT_TRUE(same_bytes(slurp(path("f")), data));
  fd.reset();
  EXPECT_EQ(WEXITSTATUS(unmount_nbd()), 0) << log();
  CommandResult c = fsck({"--scrub"});
  EXPECT_TRUE(c.ok()) << c.describe() << "\n" << c.output;
}

TEST_F(NbdFaults, ServerWriteErrorFailsTheNextFsyncAndLosesNothingFsynced) {
  ASSERT_NO_FATAL_FAILURE(serve_with_error_filter("error-pwrite"));
  ASSERT_NO_FATAL_FAILURE(mount_nbd());
  const std::string kept = pattern(300 * 1024, 'k');
  ASSERT_EQ(write_and_fsync(path("kept"), kept), 0);

  ASSERT_NO_FATAL_FAILURE(set_trigger(true));
  EXPECT_EQ(write_and_fsync(path("lost"), pattern(200 * 1024, 'l')), EIO);
  ASSERT_NO_FATAL_FAILURE(set_trigger(false));
  EXPECT_TRUE(counter_reaches(mnt(), "device_write_errors", 1));
  (void)unmount_nbd();  // its final write-back may fail: the journal aborted

  ASSERT_NO_FATAL_FAILURE(expect_recovered("kept", kept));
}

TEST_F(NbdFaults, ServerFlushErrorAbortsTheJournalToReadOnlyAndLosesNothingFsynced) {
  ASSERT_NO_FATAL_FAILURE(serve(flaky_flush_args(image(), trigger())));
  ASSERT_NO_FATAL_FAILURE(mount_nbd());
  const std::string kept = pattern(100 * 1024, 'K');
  ASSERT_EQ(write_and_fsync(path("kept"), kept), 0);

  ASSERT_NO_FATAL_FAILURE(set_trigger(true));
  EXPECT_EQ(write_and_fsync(path("after"), pattern(50 * 1024, 'a')), EIO);
  // The journal aborted: the filesystem refuses changes. The journal wakes
  // the failed fsync before it tells the engine to turn read-only, so a
  // change in between fails with the abort's EIO instead: poll for EROFS.
  int last = 0;
  EXPECT_TRUE(wait_until(
      [&] { return (last = SFS_ERRNO_OF(::mkdir(path("d").c_str(), 0755))) == EROFS; },
      std::chrono::seconds(5)))
      << "mkdir after the abort: " << strerror(last);
  EXPECT_TRUE(same_bytes(slurp(path("kept")), kept));
  ASSERT_NO_FATAL_FAILURE(set_trigger(false));
  (void)unmount_nbd();

  ASSERT_NO_FATAL_FAILURE(expect_recovered("kept", kept));
}

// A writeback error reaches every open file description of the file once
// (the kernel's errseq semantics, kept by the daemon per description: the
// kernel passes FSYNC's and FLUSH's errno through to fsync(2) and close(2)
// unchanged, the daemon never sets FOPEN_NOFLUSH, and without the
// writeback cache the kernel has no write errors of its own to add). Background writeback fails while the server fails writes;
// the journal must not commit meanwhile (commit=60), so it stays healthy.
TEST_F(NbdFaults, WritebackErrorIsReportedOnceToEachOpenFile) {
  ASSERT_NO_FATAL_FAILURE(serve_with_error_filter("error-pwrite"));
  ASSERT_NO_FATAL_FAILURE(mount_nbd({"-o", "writeback_delay=0,commit=60"}));
  const std::string data = pattern(64 * 1024, 'e');
  ASSERT_EQ(write_and_fsync(path("f"), std::string()), 0);
  UniqueFd a = open_fd(path("f"), O_RDWR), b = open_fd(path("f"), O_RDWR);
  UniqueFd d = open_fd(path("f"), O_RDONLY);  // hears of it at close (FLUSH)
  ASSERT_TRUE(a.ok() && b.ok() && d.ok()) << strerror(errno);

  ASSERT_NO_FATAL_FAILURE(set_trigger(true));
  ASSERT_EQ(::pwrite(a.get(), data.data(), data.size(), 0), ssize_t(data.size()));
  EXPECT_TRUE(wait_until([&] { return log().find("writeback of inode") != std::string::npos; },
                         std::chrono::seconds(20)))
      << "no background writeback failed:\n" << log();
  ASSERT_NO_FATAL_FAILURE(set_trigger(false));

  EXPECT_EQ(SFS_ERRNO_OF(::fsync(a.get())), EIO) << "A never heard of the lost write";
  EXPECT_EQ(::fsync(a.get()), 0) << "A heard of it twice: " << strerror(errno);
  EXPECT_EQ(SFS_ERRNO_OF(::fsync(b.get())), EIO) << "A's fsync took B's error";
  EXPECT_EQ(::fsync(b.get()), 0) << "B heard of it twice: " << strerror(errno);
  EXPECT_EQ(SFS_ERRNO_OF(::close(d.release())), EIO) << "D's close never heard of it";
  UniqueFd c = open_fd(path("f"), O_RDWR);
  ASSERT_TRUE(c.ok()) << strerror(errno);
  EXPECT_EQ(::fsync(c.get()), 0) << "opened after everyone saw it: " << strerror(errno);
  for (UniqueFd* fd : {&a, &b, &c}) EXPECT_EQ(::close(fd->release()), 0) << strerror(errno);
  EXPECT_TRUE(same_bytes(slurp(path("f")), data));
  EXPECT_EQ(WEXITSTATUS(unmount_nbd()), 0) << log();
  ASSERT_NO_FATAL_FAILURE(expect_recovered("f", data));
}

// The server dies under a mount: I/O fails with errors within a deadline
// (never hangs), the daemon says why, and once the server is back the
// image replays to a consistent state with every fsync'd byte.
TEST_F(NbdFaults, ServerKilledGivesErrorsNotAHangAndRemountIsConsistent) {
  ASSERT_NO_FATAL_FAILURE(serve({"file", image()}));
  ASSERT_NO_FATAL_FAILURE(mount_nbd());
  const std::string kept = pattern(400 * 1024, 'z');
  ASSERT_EQ(write_and_fsync(path("kept"), kept), 0);
  ASSERT_EQ(write_file(path("unsynced"), pattern(64 * 1024, 'u')), 0);

  server_->kill_hard();
  // Through child processes with deadlines: a hang fails the test instead
  // of wedging it.
  CommandResult sync = run_command({"sync", path("unsynced")}, std::chrono::seconds(30));
  EXPECT_FALSE(sync.timed_out);
  EXPECT_FALSE(sync.ok()) << "fsync succeeded with the server gone";
  CommandResult dd = run_command({"dd", "if=/dev/zero", "of=" + path("new"), "bs=64k", "count=4",
                                  "conv=fsync", "status=none"},
                                 std::chrono::seconds(30));
  EXPECT_FALSE(dd.timed_out);
  EXPECT_FALSE(dd.ok());
  (void)unmount_nbd();
  EXPECT_NE(log().find("connection to the server lost"), std::string::npos) << log();

  std::string why;
  ASSERT_TRUE(server_->restart(&why)) << why;
  ASSERT_NO_FATAL_FAILURE(expect_recovered("kept", kept));
}

// The server dies: data writes fail at once (the fsync says EIO), and the
// journal aborts at its next commit, as for any device error: the fsync of
// a change made after the loss fails, and the mount is read-only from then
// on (EROFS). A change made before that commit lives only in memory and is
// lost with the mount, which no fsync had promised otherwise. Once the
// server is back, a plain remount, with no fsck first, replays the log
// itself and finds every fsync'd byte; the image then scrubs clean.
TEST_F(NbdFaults, ServerKilledTurnsTheMountReadOnlyAndARemountReplaysIt) {
  ASSERT_NO_FATAL_FAILURE(serve({"file", image()}));
  ASSERT_NO_FATAL_FAILURE(mount_nbd({"-o", "commit=3600"}));
  const std::string kept = pattern(200 * 1024, 'q');
  ASSERT_EQ(write_and_fsync(path("kept"), kept), 0);
  // Committed (fsync) but not checkpointed: only the log holds it.
  ASSERT_EQ(::mkdir(path("dir").c_str(), 0755), 0);
  UniqueFd d = open_fd(path("dir"), O_RDONLY | O_DIRECTORY);
  ASSERT_EQ(::fsync(d.get()), 0) << strerror(errno);
  d.reset();

  server_->kill_hard();
  CommandResult dd = run_command({"dd", "if=/dev/zero", "of=" + path("new"), "bs=64k", "count=4",
                                  "conv=fsync", "status=none"},
                                 std::chrono::seconds(30));
  EXPECT_FALSE(dd.timed_out);
  EXPECT_FALSE(dd.ok());
  ASSERT_EQ(::mkdir(path("d2").c_str(), 0755), 0) << "no commit has failed yet";
  UniqueFd root = open_fd(mnt(), O_RDONLY | O_DIRECTORY);
  EXPECT_NE(::fsync(root.get()), 0) << "a commit succeeded with the server gone";
  root.reset();
  int last = 0;
  EXPECT_TRUE(wait_until(
      [&] { return (last = SFS_ERRNO_OF(::mkdir(path("d3").c_str(), 0755))) == EROFS; },
      std::chrono::seconds(10)))
      << "mkdir after the failed commit: " << strerror(last) << "\n" << log();
  (void)unmount_nbd();

  std::string why;
  ASSERT_TRUE(server_->restart(&why)) << why;
  ASSERT_NO_FATAL_FAILURE(mount_nbd());
  EXPECT_NE(log().find("replayed"), std::string::npos) << log();
  EXPECT_TRUE(same_bytes(slurp(path("kept")), kept));
  EXPECT_TRUE(S_ISDIR(stat_of(path("dir")).st_mode));
  EXPECT_NE(::access(path("d2").c_str(), F_OK), 0) << "a change no commit made durable came back";
  EXPECT_EQ(WEXITSTATUS(unmount_nbd()), 0) << log();
  CommandResult c = fsck({"--scrub"});
  EXPECT_TRUE(c.ok()) << "fsck --scrub: " << c.describe() << "\n" << c.output;
}

// Two mounts of one export from one host: the second finds the host lock
// taken, and shares the first daemon's mount instead of starting a second
// daemon (stablefs(8), "A second mount of a mounted image").
TEST_F(NbdFaults, SecondMountOfTheSameExportSharesTheFirstDaemon) {
  ASSERT_NO_FATAL_FAILURE(serve({"file", image()}));
  ASSERT_NO_FATAL_FAILURE(mount_nbd());
  const std::string other = dir() + "/mnt2";
  ASSERT_EQ(::mkdir(other.c_str(), 0755), 0);
  CommandResult second = run_command({stablefs_bin(), server_->uri(), other},
                                     std::chrono::seconds(30));
  ASSERT_TRUE(second.ok()) << second.describe() << "\n" << second.output;
  EXPECT_NE(second.output.find("shares"), std::string::npos) << second.output;
  EXPECT_GT(daemon_pid_serving(other), 0);
  EXPECT_EQ(daemon_pid_serving(other), daemon_pid_serving(mnt()));
  ASSERT_TRUE(run_command({"fusermount3", "-u", other}).ok());
  EXPECT_EQ(WEXITSTATUS(unmount_nbd()), 0) << log();
}

// Across hosts the host lock cannot help, and only the server can refuse a
// second client. A second spelling of the same export (through a symlink to
// the socket) stands in for a second host: the lock file differs, and
// nbdkit's limit filter (limit=1) turns the second daemon away.
TEST_F(NbdFaults, SingleClientServerRefusesADaemonTheHostLockCannotSee) {
  ASSERT_NO_FATAL_FAILURE(serve({"--filter=limit", "file", image(), "limit=1"}));
  ASSERT_NO_FATAL_FAILURE(mount_nbd());
  const std::string alias = dir() + "/alias.sock";
  ASSERT_EQ(::symlink(server_->socket_path().c_str(), alias.c_str()), 0);
  const std::string other = dir() + "/mnt2";
  ASSERT_EQ(::mkdir(other.c_str(), 0755), 0);
  DaemonLaunch second = launch_daemon("nbd+unix:///?socket=" + alias, other, {});
  EXPECT_FALSE(second.mounted) << "a second daemon serves the same export";
  EXPECT_TRUE(second.exited);
  EXPECT_NE(second.log.find("cannot open"), std::string::npos) << second.log;
  EXPECT_NE(server_->log().find("too many clients"), std::string::npos) << server_->log();
  EXPECT_EQ(WEXITSTATUS(unmount_nbd()), 0) << log();
}

}  // namespace
}  // namespace stablefs::integ
