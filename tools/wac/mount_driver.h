// --image mode's plumbing: make a scratch stablefs, mount it with the real
// daemon as wac's own child, unmount it, scrub it. wac only ever signals
// the daemon PID it started itself.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "core/base/result.h"
#include "tools/wac/options.h"
#include "tools/wac/subprocess.h"

namespace stablefs::wac {

struct ToolPaths {
  std::string stablefs, mkfs, fsck;
};

// --stablefs/--mkfs/--fsck when given; else the tool next to the wac
// binary (installed side by side) or one directory up (the build tree:
// tools/wac/wac beside tools/stablefs); else the bare name, for PATH.
ToolPaths locate_tools(const Options& o);

// mkfs.stablefs --force --size SIZE IMAGE.
Status make_filesystem(const ToolPaths& tools, const std::string& image, const std::string& size,
                       std::string* why);

struct ScrubResult {
  bool ran = false;
  int exit_code = -1;  // fsck's: 0 clean, 4 errors left
  std::string output;
  bool clean() const { return ran && exit_code == 0; }
};
ScrubResult scrub_filesystem(const ToolPaths& tools, const std::string& image);

class ScratchMount {
 public:
  // Starts `stablefs IMAGE MNT -f -o OPTIONS` and waits (with a deadline)
  // until the mount is live; fails with the daemon's log when it exits or
  // the deadline passes (then the daemon is killed).
  static Result<std::unique_ptr<ScratchMount>> mount(const ToolPaths& tools,
                                                     const std::string& image,
                                                     const std::string& mountpoint,
                                                     const std::string& options,
                                                     const std::string& log_path,
                                                     std::string* why);
  // fusermount3 -u, then waits for the daemon to exit (it writes back
  // everything first); SIGKILLs its PID only past a deadline. Ok when the
  // daemon exited 0.
  Status unmount(std::string* why);
  ~ScratchMount();  // unmounts if still mounted
  ScratchMount(const ScratchMount&) = delete;
  ScratchMount& operator=(const ScratchMount&) = delete;

  const std::string& mountpoint() const { return mountpoint_; }
  pid_t daemon_pid() const { return pid_; }
  // The daemon's log lines that contain `needle` (case-insensitive).
  std::vector<std::string> log_lines_with(const std::string& needle) const;

 private:
  ScratchMount(pid_t pid, std::string mnt, std::string log)
      : pid_(pid), mountpoint_(std::move(mnt)), log_path_(std::move(log)) {}
  pid_t pid_;
  std::string mountpoint_;
  std::string log_path_;
};

// Number of FUSE mounts stacked on `mountpoint` (from /proc/self/mountinfo).
int fuse_mounts_at(const std::string& mountpoint);

}  // namespace stablefs::wac
