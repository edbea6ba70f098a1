// The user-visible inode flags (chattr/lsattr, FS_IOC_GETFLAGS/SETFLAGS and
// FS_IOC_FSGETXATTR/FSSETXATTR) and how they map to the on-disk bits
// (core/base/format.h, InodeFlags). Only immutable, append-only, nodump,
// noatime and sync exist; any other flag asked for is EOPNOTSUPP, as ext4
// answers for flags it does not know.
#pragma once

#include <linux/fs.h>

#include <cstdint>

#include "core/base/format.h"
#include "core/base/result.h"

namespace stablefs {

inline constexpr uint32_t kUserFlagBits =
    kInodeImmutable | kInodeAppend | kInodeNodump | kInodeNoatime | kInodeSync;


// What a change needs the inode's flags to allow.
enum class FlagCheck {
  kWrite,       // data at an offset below the size (append-only allows EOF)
  kAppend,      // data at or past EOF
  kAttrs,       // mode, owner, size, xattrs
  kTimes,       // only timestamps (utimes, touch): append-only allows it
  kUnlink,      // remove or rename its name, or link it elsewhere
  kAddEntry,    // a directory: add a name
  kRemoveEntry, // a directory: remove a name
};

// FS_*_FL (the chattr word) and FS_XFLAG_* (struct fsxattr) <-> disk
// bits; a flag we do not have is EOPNOTSUPP. flags_forbid: 0, or EPERM
// when `disk_flags` forbid the change.
namespace inode_flags_detail {

enum Column { kDisk, kFs, kXflag };
// One row per flag: its disk bit, FS_*_FL and FS_XFLAG_* values.
constexpr uint32_t kFlagTable[][3] = {
    {kInodeImmutable, FS_IMMUTABLE_FL, FS_XFLAG_IMMUTABLE},
    {kInodeAppend, FS_APPEND_FL, FS_XFLAG_APPEND},
    {kInodeNodump, FS_NODUMP_FL, FS_XFLAG_NODUMP},
    {kInodeNoatime, FS_NOATIME_FL, FS_XFLAG_NOATIME},
    {kInodeSync, FS_SYNC_FL, FS_XFLAG_SYNC},
};

// `in`, written in column `from`, rewritten in column `to`; what has no
// row is left in *unknown.
inline uint32_t translate(uint32_t in, Column from, Column to, uint32_t* unknown) {
  uint32_t out = 0;
  for (const auto& row : kFlagTable)
    if (in & row[from]) {
      out |= row[to];
      in &= ~row[from];
    }
  if (unknown) *unknown = in;
  return out;
}

inline Result<uint32_t> translate_known(uint32_t in, Column from, Column to) {
  uint32_t unknown = 0;
  uint32_t out = translate(in, from, to, &unknown);
  if (unknown) return err(EOPNOTSUPP);
  return out;
}

}  // namespace inode_flags_detail

inline uint32_t fs_flags_of(uint32_t disk_flags) {
  using namespace inode_flags_detail;
  return translate(disk_flags, kDisk, kFs, nullptr);
}
inline Result<uint32_t> disk_flags_from_fs(uint32_t fs_flags) {
  using namespace inode_flags_detail;
  return translate_known(fs_flags, kFs, kDisk);
}
inline uint32_t xflags_of(uint32_t disk_flags) {
  using namespace inode_flags_detail;
  return translate(disk_flags, kDisk, kXflag, nullptr);
}
inline Result<uint32_t> disk_flags_from_xflags(uint32_t xflags) {
  using namespace inode_flags_detail;
  return translate_known(xflags, kXflag, kDisk);
}

inline int flags_forbid(uint32_t disk_flags, FlagCheck what) {
  if (disk_flags & kInodeImmutable) return EPERM;
  if (!(disk_flags & kInodeAppend)) return 0;
  switch (what) {
    case FlagCheck::kAppend:
    case FlagCheck::kTimes:
    case FlagCheck::kAddEntry: return 0;
    default: return EPERM;
  }
}

}  // namespace stablefs
