#include "tools/wac/mount_driver.h"

#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cctype>
#include <chrono>
#include <fstream>
#include <sstream>

#include "tools/wac/stop_signals.h"

namespace stablefs::wac {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kMountDeadline = std::chrono::seconds(20);
constexpr auto kUnmountDeadline = std::chrono::seconds(120);  // the final writeback
// Nothing signals "the mount went live"; mountinfo is re-read at this pace
// (a SIGCHLD from a failing daemon ends the wait at once).
constexpr int kMountPollMs = 10;

bool executable(const std::string& p) { return ::access(p.c_str(), X_OK) == 0; }

std::string find_tool(const std::string& given, const char* env, const std::string& name) {
  if (!given.empty()) return given;
  if (const char* e = std::getenv(env); e && *e) return e;
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = '\0';
    std::string dir(self);
    dir.resize(dir.find_last_of('/'));
    if (executable(dir + "/" + name)) return dir + "/" + name;
    std::string up = dir.substr(0, dir.find_last_of('/'));
    if (executable(up + "/" + name)) return up + "/" + name;
  }
  return name;
}

bool wait_reaped(pid_t pid, int* status, Clock::time_point deadline) {
  for (;;) {
    drain_signal_pipe();
    pid_t r = ::waitpid(pid, status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return true;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    wait_for_signal(int(left.count()) + 1);
  }
}

}  // namespace

int fuse_mounts_at(const std::string& mountpoint) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string id, parent, devno, root, point;
    ss >> id >> parent >> devno >> root >> point;
    auto sep = line.find(" - ");
    if (sep == std::string::npos || point != mountpoint) continue;
    std::istringstream rest(line.substr(sep + 3));
    std::string fstype;
    rest >> fstype;
    if (fstype.rfind("fuse", 0) == 0) n++;
  }
  return n;
}

ToolPaths locate_tools(const Options& o) {
  return {find_tool(o.stablefs_bin, "WAC_STABLEFS", "stablefs"),
          find_tool(o.mkfs_bin, "WAC_MKFS", "mkfs.stablefs"),
          find_tool(o.fsck_bin, "WAC_FSCK", "fsck.stablefs")};
}

Status make_filesystem(const ToolPaths& tools, const std::string& image, const std::string& size,
                       std::string* why) {
  // A fresh sparse file each time (mkfs --size only creates new images);
  // the options check made sure IMAGE is a regular file wac may replace.
  if (::unlink(image.c_str()) != 0 && errno != ENOENT) {
    *why = image + ": " + std::strerror(errno);
    return err(errno);
  }
  CommandResult r = run_command({tools.mkfs, "--force", "-q", "--size", size, image}, 300);
  if (r.exit_code() == 0) return Status::Ok();
  *why = tools.mkfs + " failed (exit " + std::to_string(r.exit_code()) + "): " + r.output;
  return err(EIO);
}

ScrubResult scrub_filesystem(const ToolPaths& tools, const std::string& image) {
  CommandResult r = run_command({tools.fsck, "--scrub", image}, 1800);
  ScrubResult s;
  s.ran = r.started && !r.timed_out;
  s.exit_code = r.exit_code();
  s.output = r.output;
  return s;
}

Result<std::unique_ptr<ScratchMount>> ScratchMount::mount(const ToolPaths& tools,
                                                          const std::string& image,
                                                          const std::string& mountpoint,
                                                          const std::string& options,
                                                          const std::string& log_path,
                                                          std::string* why) {
  std::vector<std::string> argv = {tools.stablefs, image, mountpoint, "-f"};
  if (!options.empty()) argv.insert(argv.end(), {"-o", options});
  const int before = fuse_mounts_at(mountpoint);
  pid_t pid = spawn_in_own_session(argv, log_path);
  if (pid < 0) {
    *why = "cannot fork the daemon";
    return err(EAGAIN);
  }
  std::unique_ptr<ScratchMount> m(new ScratchMount(pid, mountpoint, log_path));
  const auto deadline = Clock::now() + kMountDeadline;
  for (;;) {
    drain_signal_pipe();
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      m->pid_ = -1;
      std::ifstream in(log_path);
      std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      *why = "the daemon exited (status " + std::to_string(status) + ") without mounting: " + log;
      return err(EIO);
    }
    if (fuse_mounts_at(mountpoint) > before) return m;
    if (Clock::now() >= deadline || stop_signal_received()) {
      *why = stop_signal_received() ? "interrupted while mounting"
                                    : "the mount did not go live within 20 s";
      return err(ETIMEDOUT);  // ~ScratchMount unmounts and reaps it
    }
    wait_for_signal(kMountPollMs);
  }
}

Status ScratchMount::unmount(std::string* why) {
  if (pid_ < 0) return Status::Ok();
  if (fuse_mounts_at(mountpoint_) > 0) {
    CommandResult u = run_command({"fusermount3", "-u", mountpoint_}, 120);
    if (u.exit_code() != 0) {
      *why = "fusermount3 -u " + mountpoint_ + ": " + u.output + "; detaching lazily";
      run_command({"fusermount3", "-uz", mountpoint_}, 60);
    }
  }
  int status = 0;
  if (!wait_reaped(pid_, &status, Clock::now() + kUnmountDeadline)) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
    *why += (why->empty() ? "" : "; ") + std::string("the daemon did not exit; killed it");
    pid_ = -1;
    return err(ETIMEDOUT);
  }
  pid_ = -1;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::Ok();
  *why += (why->empty() ? "" : "; ") + std::string("the daemon exited with status ") +
          std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  return err(EIO);
}

ScratchMount::~ScratchMount() {
  std::string ignored;
  (void)unmount(&ignored);
}

std::vector<std::string> ScratchMount::log_lines_with(const std::string& needle) const {
  std::vector<std::string> out;
  std::ifstream in(log_path_);
  std::string line;
  auto lower = [](std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
  };
  const std::string n = lower(needle);
  while (std::getline(in, line))
    if (lower(line).find(n) != std::string::npos) out.push_back(line);
  return out;
}

}  // namespace stablefs::wac
