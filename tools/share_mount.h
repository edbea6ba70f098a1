// A second mount of an image that a running daemon already serves.
//
// `mount /dev/sdb1 /b` while /a has it mounted gives /b a second mount of
// the same ext4 superblock. Here `stablefs IMAGE /b`, while a daemon serves
// IMAGE at /a, gives /b a second mount of that daemon's FUSE superblock
// (what `mount --bind /a /b` does) with /b's own per-mount flags (ro,
// nosuid, nodev, noexec), and starts no daemon. The kernel counts the
// superblock's mounts: the daemon serves until the last one is unmounted,
// then exits and lets go of the image, as after any unmount.
//
// The protocol, and why it cannot attach the wrong thing or a dead mount:
//  1. For each fuse.stablefs mount this process sees, clone it detached
//     (open_tree(OPEN_TREE_CLONE)). The clone holds the superblock: from
//     here on its daemon cannot finish going away under us.
//  2. Ask the clone which image its daemon serves (kIocMountIdentity) and
//     compare device and inode (or device number, or NBD URI) with IMAGE's.
//     A daemon already gone answers ENOTCONN and is passed over.
//  3. Refuse options only a new daemon could honour that differ from the
//     daemon's (fs/daemon_options.h), and a read-write mount of a daemon
//     that serves read-only.
//  4. Set the per-mount flags on the clone (mount_setattr), so /b is never
//     visible with the wrong ones, and attach it at /b (move_mount).
//  5. Ask /b again; anything but the same daemon's answer detaches /b.
// Needs CAP_SYS_ADMIN, as any bind mount does.
#pragma once

#include <string>
#include <vector>

#include "core/base/result.h"
#include "fs/mount_identity.h"
#include "fs/options.h"

namespace stablefs {

// The identity of `source` (a canonical path or an NBD URI) as this process
// sees it now, with this process's pid, the given daemon options and the
// mount point that names its counters. The daemon calls it once the image
// is open and locked, so the path then names what it locked. Errors:
// stat's.
Result<MountIdentity> identify_source(const std::string& source, const std::string& options,
                                      const std::string& counters_mountpoint);

// True when both name the same image: same kind, and the same inode, device
// number or URI.
bool same_source(const MountIdentity& a, const MountIdentity& b);

struct ShareRequest {
  std::string target;      // canonical path or NBD URI
  std::string mountpoint;  // canonical; not a mount point yet
  std::vector<std::string> option_strings;  // the -o arguments as given
  ParsedMountOptions options;               // and parsed
};

struct ShareResult {
  enum class Outcome {
    kShared,   // mountpoint now shares the daemon's mount
    kRefused,  // the image is served here, but not as asked
    kNoMount,  // no mount of the image this process can share
  };
  Outcome outcome = Outcome::kNoMount;
  // kShared: the line to print; kRefused: why, one line; kNoMount: a hint
  // for the "in use" message, or empty.
  std::string message;
};

ShareResult share_served_mount(const ShareRequest& r);

}  // namespace stablefs
