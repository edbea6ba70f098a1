// Which image a running daemon serves, asked of any of its mounts by an
// ioctl: how a second `stablefs IMAGE DIR` finds the mount of the same
// image to share (tools/share_mount.h) and proves it is the same image
// however the two paths are spelled (symlinks, relative paths, hard links):
// an image file is its device and inode, a block device its device number,
// an NBD export its URI as given. Filled in by the daemon
// (tools/share_mount.h, identify_source), answered by fs/ops_attrs.cc.
#pragma once

#include <sys/ioctl.h>

#include <cstdint>
#include <string>


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
};
static_assert(sizeof(MountIdentity) == 48 + 2048, "no padding");

constexpr uint64_t kMountIdentityMagic = 0x44494d5346534653ull;  // "SFSFSMID"
constexpr uint32_t kMountIdentityVersion = 1;
// _IOR: the kernel passes a FUSE daemon no input for it, and copies
// sizeof(MountIdentity) bytes of the answer out. Only ever sent to
// fuse.stablefs mounts, where nothing else answers type 'S'.
constexpr unsigned kIocMountIdentity = _IOR('S', 0x5f, MountIdentity);

}  // namespace stablefs
