#include "tests/integration/mount_fixture.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "fs/mount_identity.h"
#include "tests/integration/test_util.h"

// STABLEFS_BIN, MKFS_BIN and FSCK_BIN come from tests/integration/CMakeLists.txt:
// the tools are always built with the tests.

namespace stablefs::integ {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kMountDeadline = std::chrono::seconds(10);
// Unmount writes back whatever is dirty; a 2G image with a few hundred MB
// of cached data still finishes well inside this.
constexpr auto kExitDeadline = std::chrono::seconds(60);

// Mount points (field 5) of fuse mounts in /proc/self/mountinfo.
std::vector<std::string> fuse_mount_points() {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string id, parent, devno, root, point;
    ss >> id >> parent >> devno >> root >> point;
    auto sep = line.find(" - ");
    if (sep == std::string::npos) continue;
    std::istringstream rest(line.substr(sep + 3));
    std::string fstype;
    rest >> fstype;
    if (fstype.rfind("fuse", 0) == 0) out.push_back(point);
  }
  return out;
}

void fusermount(const std::string& mountpoint, bool lazy) {
  run_command({"fusermount3", lazy ? "-uz" : "-u", mountpoint}, std::chrono::seconds(30));
}

}  // namespace

const char* stablefs_bin() { return STABLEFS_BIN; }
const char* mkfs_bin() { return MKFS_BIN; }
const char* fsck_bin() { return FSCK_BIN; }

long daemon_pid_serving(const std::string& mountpoint) {
  UniqueFd d = open_fd(mountpoint, O_RDONLY | O_DIRECTORY);
  if (!d.ok()) return -errno;
  auto id = ask_mount_identity(d.get());
  return id.ok() ? long(id->pid) : -long(id.error());
}

int fuse_mounts_at(const std::string& mountpoint) {
  auto points = fuse_mount_points();
  return int(std::count(points.begin(), points.end(), mountpoint));
}

std::string RealMount::mount_options() const {
  const char* opts = std::getenv("INTEG_MOUNT_OPTS");
  return opts == nullptr ? std::string() : std::string(opts);
}

void RealMount::SetUp() {
  const char* plain = std::getenv("INTEG_PLAIN_DIR");
  ASSERT_TRUE(plain == nullptr || *plain == '\0')
      << "INTEG_PLAIN_DIR is set, but the plain-directory mode is gone: these tests only "
         "mean something on a stablefs mount";
  std::string templ = "/tmp/integ-XXXXXX";
  ASSERT_NE(mkdtemp(templ.data()), nullptr) << "mkdtemp under /tmp";
  dir_ = templ;
  image_ = dir_ + "/image";
  mnt_ = dir_ + "/mnt";
  ASSERT_EQ(::mkdir(mnt_.c_str(), 0755), 0);

  ASSERT_EQ(access("/dev/fuse", R_OK | W_OK), 0)
      << "/dev/fuse is missing or inaccessible: the integration tests need a FUSE-capable "
         "machine (modprobe fuse, or run the container with --device /dev/fuse)";
  const char* nbd = std::getenv("INTEG_NBD");
  if (nbd != nullptr && *nbd != '\0') {
    ASSERT_NO_FATAL_FAILURE(serve_image_over_nbd(nbd));
    // The export's size is the server's; mkfs takes it as it is.
    CommandResult mk = run_mkfs({image_});
    ASSERT_TRUE(mk.ok()) << "mkfs.stablefs " << image_ << ": " << mk.describe() << "\n"
                         << mk.output << "\n--- server log ---\n" << nbd_->log();
  } else {
    CommandResult mk = run_mkfs({"--size", image_size(), image_});
    ASSERT_TRUE(mk.ok()) << "mkfs.stablefs --size " << image_size() << ": " << mk.describe()
                         << "\n" << mk.output;
  }
  if (mount_in_setup()) mount();
}

void RealMount::serve_image_over_nbd(const std::string& kind) {
  std::string why;
  if (kind == "nbdkit-memory") {
    nbd_ = NbdServer::nbdkit(dir_, {"memory", image_size()}, &why);
  } else if (kind == "nbdkit-file") {
    CommandResult t = run_command({"truncate", "-s", image_size(), image_});
    ASSERT_TRUE(t.ok()) << "truncate: " << t.output;
    nbd_ = NbdServer::nbdkit(dir_, {"file", image_}, &why);
  } else if (kind == "qemu-nbd-qcow2") {
    std::string qcow = image_ + ".qcow2";
    CommandResult c = run_command({"qemu-img", "create", "-q", "-f", "qcow2", qcow, image_size()});
    ASSERT_TRUE(c.ok()) << "qemu-img create: " << c.output;
    nbd_ = NbdServer::qemu_nbd(dir_, qcow, "qcow2", &why);
  } else {
    FAIL() << "INTEG_NBD=" << kind << ": expected nbdkit-memory, nbdkit-file or qemu-nbd-qcow2";
  }
  ASSERT_NE(nbd_, nullptr) << "starting the NBD server (" << kind << "): " << why;
  image_ = nbd_->uri();
}

// True when CI=true (or 1) is in the environment, as CI services set it.
static bool running_in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && (std::string(ci) == "true" || std::string(ci) == "1");
}

void RealMount::TearDown() {
  if (IsSkipped() && running_in_ci())
    ADD_FAILURE() << "a mount test skipped itself in CI (CI=true): a skipped test would count "
                     "as passed, so it fails instead; give the machine what the test needs";
  if (dir_.empty()) return;
  if (daemon_pid_ > 0) {
    fusermount(mnt_, false);
    if (fuse_mounts_at(mnt_) > 0) fusermount(mnt_, true);
  }
  // Anything a test left mounted under our dir (extra mountpoints).
  for (const auto& p : fuse_mount_points()) {
    if (p.rfind(dir_ + "/", 0) == 0) fusermount(p, true);
  }
  for (pid_t pid : owned_pids_) {
    int status = 0;
    if (!wait_with_deadline(pid, kExitDeadline, &status)) {
      ADD_FAILURE() << "daemon " << pid << " did not exit after unmount; SIGKILL";
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
    } else if (WIFSIGNALED(status)) {
      ADD_FAILURE() << "daemon " << pid << " " << describe_wait_status(status)
                    << "\n--- daemon log ---\n"
                    << daemon_log();
    }
  }
  owned_pids_.clear();
  daemon_pid_ = -1;
  nbd_.reset();  // stops the server by pid, once no daemon uses it
  const char* keep = std::getenv("INTEG_KEEP");
  bool still_mounted = false;
  for (const auto& p : fuse_mount_points()) still_mounted |= p.rfind(dir_ + "/", 0) == 0;
  if (still_mounted) {
    ADD_FAILURE() << "a mount under " << dir_ << " survived teardown; not removing it";
  } else if (keep == nullptr || *keep == '\0') {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

DaemonLaunch RealMount::launch_daemon(const std::string& image, const std::string& mountpoint,
                                      const std::vector<std::string>& extra_args) {
  DaemonLaunch out;
  out.log_path = dir_ + "/daemon-" + std::to_string(++launches_) + ".log";
  std::vector<std::string> argv = {stablefs_bin(), image, mountpoint, "-f"};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  const int before = fuse_mounts_at(mountpoint);
  out.pid = spawn_logged(argv, out.log_path);
  if (out.pid < 0) {
    ADD_FAILURE() << "cannot start " << stablefs_bin();
    return out;
  }
  // Poll two external events, the mount appearing or the child exiting,
  // against a deadline.
  const auto end = Clock::now() + kMountDeadline;
  for (;;) {
    if (waitpid(out.pid, &out.status, WNOHANG) == out.pid) {
      out.exited = true;
      break;
    }
    if (fuse_mounts_at(mountpoint) > before) {
      out.mounted = true;
      owned_pids_.push_back(out.pid);
      break;
    }
    if (Clock::now() >= end) {
      out.timed_out = true;
      if (fuse_mounts_at(mountpoint) > before) fusermount(mountpoint, true);
      kill(out.pid, SIGKILL);
      waitpid(out.pid, &out.status, 0);
      break;
    }
    usleep(5000);
  }
  out.log = read_file(out.log_path);
  return out;
}

int RealMount::stop_daemon(pid_t pid, const std::string& mountpoint) {
  CommandResult u = run_command({"fusermount3", "-u", mountpoint}, std::chrono::seconds(30));
  EXPECT_TRUE(u.ok()) << "fusermount3 -u " << mountpoint << ": " << u.output;
  if (!u.ok()) fusermount(mountpoint, true);
  int status = 0;
  if (!wait_with_deadline(pid, kExitDeadline, &status)) {
    ADD_FAILURE() << "daemon did not exit within the deadline after unmount; SIGKILL";
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  owned_pids_.erase(std::remove(owned_pids_.begin(), owned_pids_.end(), pid), owned_pids_.end());
  return status;
}

void RealMount::mount() {
  ASSERT_LT(daemon_pid_, 0) << "already mounted";
  std::vector<std::string> extra;
  if (!mount_options().empty()) extra = {"-o", mount_options()};
  DaemonLaunch l = launch_daemon(image_, mnt_, extra);
  log_path_ = l.log_path;
  ASSERT_TRUE(l.mounted) << "stablefs " << image_ << " " << mnt_ << " did not mount: "
                         << (l.timed_out ? "no mount within 10 s" : describe_wait_status(l.status))
                         << "\n--- daemon log ---\n"
                         << l.log;
  daemon_pid_ = l.pid;
  struct stat st;
  ASSERT_EQ(::stat(mnt_.c_str(), &st), 0) << "stat of the live mountpoint: " << strerror(errno);
  ASSERT_TRUE(S_ISDIR(st.st_mode));
}

void RealMount::unmount_only() {
  ASSERT_GT(daemon_pid_, 0) << "not mounted";
  pid_t pid = daemon_pid_;
  daemon_pid_ = -1;
  last_status_ = stop_daemon(pid, mnt_);
  EXPECT_TRUE(WIFEXITED(last_status_) && WEXITSTATUS(last_status_) == 0)
      << "daemon " << describe_wait_status(last_status_) << " on unmount\n--- daemon log ---\n"
      << daemon_log();
}

std::string RealMount::daemon_log() const {
  return log_path_.empty() ? std::string() : read_file(log_path_);
}

CommandResult RealMount::run_fsck(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {fsck_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(image_);
  return run_command(argv, std::chrono::seconds(120));
}

CommandResult RealMount::run_mkfs(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {mkfs_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, std::chrono::seconds(60));
}

}  // namespace stablefs::integ
