// Which image a running daemon serves, asked of any of its mounts by an
// ioctl: how a second `stablefs IMAGE DIR` finds the mount of the same
// image to share (tools/share_mount.h) and proves it is the same image
// however the two paths are spelled (symlinks, relative paths, hard links):
// an image file is its device and inode, a block device its device number,
// an NBD export its URI as given. Filled in by the daemon
// (tools/share_mount.h, identify_source), answered by fs/ops_attrs.cc.
#pragma once

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/vfs.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "core/base/result.h"
#include "core/base/unique_fd.h"


namespace stablefs {

enum class SourceKind : uint32_t { kImageFile = 1, kBlockDevice = 2, kNbd = 3 };

// The ioctl's answer. It crosses processes, never the disk: fixed-width
// fields, no padding, strings NUL-terminated (longer ones are cut, and
// then never match).
struct MountIdentity {
  uint64_t magic = 0;    // kMountIdentityMagic
  uint32_t version = 0;  // kMountIdentityVersion
  uint32_t kind = 0;     // SourceKind
  uint64_t dev = 0;      // image file: st_dev and st_ino
  uint64_t ino = 0;
  uint64_t rdev = 0;     // block device: st_rdev
  int64_t pid = 0;       // the daemon's
  char source[1024] = {};   // the canonical path or the NBD URI
  char options[1024] = {};  // encode_daemon_options() of the daemon
  // The mount point the daemon was started on, which names its live
  // counters (core/stats/live_counters.h); a shared mount has another.
  char counters_mountpoint[1024] = {};
};
static_assert(sizeof(MountIdentity) == 48 + 3 * 1024, "no padding");

constexpr uint64_t kMountIdentityMagic = 0x44494d5346534653ull;  // "SFSFSMID"
constexpr uint32_t kMountIdentityVersion = 1;
// _IOR: the kernel passes a FUSE daemon no input for it, and copies
// sizeof(MountIdentity) bytes of the answer out. Only ever sent to
// fuse.stablefs mounts, where nothing else answers type 'S'.
constexpr unsigned kIocMountIdentity = _IOR('S', 0x5f, MountIdentity);

// Asks the mount that `dir_fd` is on. Errors: the ioctl's (ENOTTY: not
// stablefs, or a daemon older than the ioctl; ENOTCONN: its daemon is
// gone), EPROTO for an answer of another layout.
inline Result<MountIdentity> ask_mount_identity(int dir_fd) {
  MountIdentity id;
  if (::ioctl(dir_fd, kIocMountIdentity, &id) != 0) return err(errno);
  if (id.magic != kMountIdentityMagic || id.version != kMountIdentityVersion) return err(EPROTO);
  return id;
}

// Where the daemon serving the mount at `mountpoint` (canonical) publishes
// its counters: `mountpoint` itself, unless it is a FUSE mount whose daemon
// says it was started on another one (a second mount that shares it). Asking
// costs the daemon a STATFS and an IOCTL request, which the counters would
// show: call it only when `mountpoint` has no counters of its own.
inline std::string counters_mountpoint_for(const std::string& mountpoint) {
  constexpr long kFuseSuperMagic = 0x65735546;  // only FUSE mounts are asked
  UniqueFd d(::open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  struct statfs sf {};
  if (!d.ok() || ::fstatfs(d.get(), &sf) != 0 || sf.f_type != kFuseSuperMagic) return mountpoint;
  auto id = ask_mount_identity(d.get());
  if (!id.ok() || id->counters_mountpoint[0] == '\0' ||
      ::strnlen(id->counters_mountpoint, sizeof id->counters_mountpoint) ==
          sizeof id->counters_mountpoint)
    return mountpoint;
  return id->counters_mountpoint;
}

}  // namespace stablefs
