// RealMount: a fresh stablefs image mounted through the real daemon for
// each test. SetUp makes a temp dir, runs mkfs on a sparse image, starts
// `stablefs IMAGE MNT -f` as a child with its stderr captured, and waits
// for the mount to appear. TearDown always unmounts, reaps the daemon (and
// SIGKILLs only that pid if it won't go) and removes the temp dir.
//
// There is no mode without a mount: a test derived from this fixture runs
// on stablefs or fails. A missing precondition (/dev/fuse, the tools) is a
// failure, and with CI=true in the environment a test that skips itself
// (GTEST_SKIP) is turned into a failure too.
// INTEG_MOUNT_OPTS=a,b adds `-o a,b` to every fixture mount.
// INTEG_NBD=nbdkit-memory|nbdkit-file|qemu-nbd-qcow2 puts the filesystem on
// an NBD export instead: SetUp starts that server on a unix socket in the
// temp dir (nbdkit memory; nbdkit file over an image; qemu-nbd over a qcow2
// image), image() is its nbd+unix:// URI, and TearDown stops it by pid after
// the daemon is gone. Only for tests that use image() as a target, never
// as a file.
// INTEG_KEEP=1 keeps the temp dir (image and daemon logs) for debugging.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tests/integration/nbd_server.h"
#include "tests/integration/process.h"

namespace stablefs::integ {

// Paths of the built tools.
const char* stablefs_bin();
const char* mkfs_bin();
const char* fsck_bin();

// Number of FUSE mounts currently stacked on `mountpoint`.
int fuse_mounts_at(const std::string& mountpoint);

// The pid of the daemon serving the stablefs mount at `mountpoint`, from
// its identity ioctl (fs/mount_identity.h); -errno when it does not answer.
// Two mounts that share one daemon give the same pid.
long daemon_pid_serving(const std::string& mountpoint);

struct DaemonLaunch {
  bool mounted = false;  // the mount went live; pid is the running daemon
  pid_t pid = -1;
  int status = 0;  // waitpid status when !mounted and exited
  bool exited = false;
  bool timed_out = false;
  std::string log;  // what the daemon printed (read at return)
  std::string log_path;
};

class RealMount : public ::testing::Test {
 protected:
  // Knobs a test fixture can override.
  virtual std::string image_size() const { return "2G"; }
  // Default: $INTEG_MOUNT_OPTS, so the whole matrix can be rerun under
  // e.g. writeback_cache or stable_pages=bounce without a rebuild.
  virtual std::string mount_options() const;
  virtual bool mount_in_setup() const { return true; }

  void SetUp() override;
  void TearDown() override;

  const std::string& dir() const { return dir_; }
  // The target given to mkfs, the daemon and fsck: an image file, or an
  // NBD URI under INTEG_NBD.
  const std::string& image() const { return image_; }
  // The NBD server under INTEG_NBD, else null.
  NbdServer* nbd_server() const { return nbd_.get(); }
  const std::string& mnt() const { return mnt_; }
  std::string path(std::string_view rel) const { return mnt_ + "/" + std::string(rel); }

  // Mounts image() on mnt() with mount_options(); fails the test when the
  // daemon exits or the mount does not go live within 10 s.
  void mount();
  // Unmounts and reaps the daemon, expecting a clean exit 0.
  void unmount_only();
  void remount() {
    unmount_only();
    if (!HasFatalFailure()) mount();
  }
  bool is_mounted() const { return daemon_pid_ > 0; }
  // Everything the current (or last) daemon wrote to stdout/stderr.
  std::string daemon_log() const;
  // waitpid status of the last daemon reaped by unmount_only().
  int last_daemon_status() const { return last_status_; }

  // Starts a daemon on (image, mountpoint) and waits until it either mounts
  // or exits. A mounted daemon is owned by the fixture (killed in TearDown
  // if the test does not stop it with stop_daemon()).
  DaemonLaunch launch_daemon(const std::string& image, const std::string& mountpoint,
                             const std::vector<std::string>& extra_args);
  // Unmounts `mountpoint` (the top mount) and reaps `pid`; returns its status.
  int stop_daemon(pid_t pid, const std::string& mountpoint);

  CommandResult run_fsck(const std::vector<std::string>& args);  // image() appended
  CommandResult run_mkfs(const std::vector<std::string>& args);  // as given

 private:
  std::string dir_, image_, mnt_, log_path_;
  pid_t daemon_pid_ = -1;
  int last_status_ = 0;
  int launches_ = 0;
  std::vector<pid_t> owned_pids_;
  std::unique_ptr<NbdServer> nbd_;

  // Under INTEG_NBD: starts the server and points image_ at it.
  void serve_image_over_nbd(const std::string& kind);
};

// A RealMount that other users reach too: mounted allow_other, with the
// test's directory (0700 from mkdtemp) opened to 0755.
class SharedMount : public RealMount {
 protected:
  std::string mount_options() const override { return "allow_other"; }
  void SetUp() override {
    RealMount::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_EQ(::chmod(dir().c_str(), 0755), 0);
  }
};

}  // namespace stablefs::integ
