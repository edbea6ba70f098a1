// Attributes, statfs and extended attributes.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "core/base/format.h"
#include "core/mounted_fs.h"
#include "core/posix_acl.h"
#include "core/xattr_block.h"

namespace stablefs {

namespace {
constexpr std::string_view kCapabilityXattr = "security.capability";

// The setid bits of `mode` that a truncate or chown by a caller without
// CAP_FSETID drops (FATTR_KILL_SUIDGID).
uint32_t setid_of_unprivileged(uint32_t mode) {
  uint32_t bits = mode & S_ISUID;
  if ((mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP)) bits |= S_ISGID;
  return bits;
}

// The setid bits of n that a data change by `caller` drops: the VFS's
// should_remove_suid and setattr_should_drop_sgid. n.mu held.
uint32_t setid_dropped_for(const Inode& n, PrivilegeCaller& caller) {
  const uint32_t mode = n.disk.mode;
  uint32_t bits = mode & S_ISUID;
  if ((mode & S_ISGID) && ((mode & S_IXGRP) || !caller.in_group(n.disk.gid))) bits |= S_ISGID;
  return bits && !caller.has_fsetid() ? bits : 0;
}
}  // namespace

Result<Attr> MountedFs::getattr(uint64_t ino) {
  auto n = get_inode(ino);
  if (!n.ok()) return Error{n.error()};
  std::lock_guard lk((*n)->mu);
  return to_attr(**n);
}

// touch, utimes(NULL): setting the times to "now" is allowed on an
// append-only inode; explicit times are not (as ext4 and the VFS).
static bool only_times(const SetAttr& sa) {
  return !sa.mode && !sa.uid && !sa.gid && !sa.size && !sa.kill_suidgid && !sa.explicit_times;
}

// chattr +S: the change is committed before the call returns.
Result<Attr> MountedFs::setattr(uint64_t ino, const SetAttr& sa) {
  auto a = setattr_stored(ino, sa);
  if (!a.ok()) return a;
  auto nr = get_inode(ino);
  if (nr.ok() && has_sync_flag(**nr)) SFS_TRY(fsync(ino, false));
  return a;
}

Result<Attr> MountedFs::setattr_stored(uint64_t ino, const SetAttr& sa) {
  if (read_only_) return err(EROFS);
  SFS_TRY(check_inode_flags(ino, only_times(sa) ? FlagCheck::kTimes : FlagCheck::kAttrs));
  auto nr = get_inode(ino);
  if (!nr.ok()) return Error{nr.error()};
  Inode& n = **nr;
  std::unique_lock op(n.op);
  if (sa.size) {
    {
      std::lock_guard lk(n.mu);
      if (n.is_dir()) return err(EISDIR);
      if (!n.is_reg()) return err(EINVAL);
    }
    if (*sa.size > (uint64_t(UINT32_MAX) + 1) * kBlockSize) return err(EFBIG);
    SFS_TRY(truncate_locked(*nr, *sa.size));
  }
  // A chmod rewrites the access ACL, and with it the xattr set.
  Handle h = journal_->start(sa.mode ? kXattrStoreCredits : 0);
  std::lock_guard lk(n.mu);
  // The new attributes are built in a copy: n keeps what is stored until
  // the store succeeded, so a failed setattr leaves no unsaved value behind.
  Timespec t = now();
  DiskInode next = n.disk;
  if (sa.mode) next.mode = (next.mode & S_IFMT) | (*sa.mode & 07777);
  if (sa.mode) SFS_TRY(chmod_acl_locked(h, n, next));
  if (sa.uid) next.uid = *sa.uid;
  if (sa.gid) next.gid = *sa.gid;
  if (sa.atime) next.atime = *sa.atime;
  if (sa.mtime) next.mtime = *sa.mtime;
  if (sa.size && !sa.mtime) next.mtime = t;
  next.ctime = sa.ctime ? *sa.ctime : t;
  if (sa.kill_suidgid) SFS_TRY(kill_privileges_locked(h, n, next, setid_of_unprivileged(next.mode)));
  else SFS_TRY(store_inode(h, n, next));
  return to_attr(n);
}

Result<FsStat> MountedFs::statfs() {
  FsStat s;
  s.blocks = sb_.total_blocks - sb_.data_start;
  // Dirty pages will each take a block at writeback: count them as used
  // now (ext4 does the same for delayed allocation).
  uint64_t free_blocks = alloc_->free_block_count() + alloc_->pending_free_blocks();
  uint64_t promised = pages_->dirty_count() + pages_->writeback_count();
  free_blocks = free_blocks > promised ? free_blocks - promised : 0;
  s.blocks_free = std::min(free_blocks, s.blocks);
  s.files = sb_.inode_count;
  s.files_free = alloc_->free_inode_count();
  return s;
}

Status MountedFs::open(uint64_t ino, int flags) {
  auto nr = get_inode(ino);
  if (!nr.ok()) return Error{nr.error()};
  std::lock_guard lk((*nr)->mu);
  if ((*nr)->is_dir() && (flags & O_ACCMODE) != O_RDONLY) return err(EISDIR);
  if (read_only_ && (flags & O_ACCMODE) != O_RDONLY) return err(EROFS);
  // chattr +i: no writer; +a: writers only with O_APPEND (as may_open).
  if ((flags & O_ACCMODE) != O_RDONLY) {
    FlagCheck what = (flags & O_APPEND) && !(flags & O_TRUNC) ? FlagCheck::kAppend : FlagCheck::kWrite;
    if (int e = flags_forbid((*nr)->disk.flags, what)) return err(e);
  }
  return Status::Ok();
}

// ---- Extended attributes (stored by core/xattr_block.cc) ----
namespace {

bool supported_namespace(std::string_view name) {
  if (is_posix_acl_name(name)) return true;
  for (std::string_view p : {"user.", "trusted.", "security."})
    if (name.size() > p.size() && name.substr(0, p.size()) == p) return true;
  return false;
}

}  // namespace

XattrSpace MountedFs::xattr_space() {
  return XattrSpace{*cache_, *alloc_, [this] { return enable_incompat(kIncompatLargeXattrs); }};
}

// Makes `xs` n's extended attributes and `next` its other attributes: the
// block, then the inode (with a new ctime, and the block's number when one
// is allocated or freed), then the map. n's record is journalled unchanged
// first, so the one read a store can fail on happens before anything
// changed. n.mu held.
Status MountedFs::store_xattr_map(Handle& h, Inode& n, std::map<std::string, std::string> xs,
                                  DiskInode next) {
  SFS_TRY(pin_inode(h, n));
  SFS_TRY(store_xattrs(h, xattr_space(), n.ino, next, xs));
  next.ctime = now();
  SFS_TRY(store_inode(h, n, next));
  *n.xattrs = std::move(xs);
  return Status::Ok();
}

Status MountedFs::setxattr(uint64_t ino, std::string_view name, std::string_view value,
                           int flags) {
  if (read_only_) return err(EROFS);
  if (name.size() > kXattrNameMax) return err(ERANGE);
  if (!supported_namespace(name)) return err(EOPNOTSUPP);
  if (value.size() > kXattrValueMax) return err(E2BIG);
  SFS_TRY(check_inode_flags(ino, FlagCheck::kAttrs));
  if (is_posix_acl_name(name)) return set_acl(ino, name, value, flags);
  return change_inode(ino, [&](Handle& h, Inode& n) -> Status {
    SFS_TRY(load_xattrs(*cache_, n));
    SFS_TRY(check_xattr_flags(*n.xattrs, name, flags));
    auto updated = *n.xattrs;
    updated[std::string(name)] = std::string(value);
    if (!xattrs_fit(updated)) return err(ENOSPC);
    return store_xattr_map(h, n, std::move(updated), n.disk);
  }, kXattrStoreCredits);
}

Result<std::string> MountedFs::getxattr(uint64_t ino, std::string_view name) {
  auto nr = get_inode(ino);
  if (!nr.ok()) return Error{nr.error()};
  Inode& n = **nr;
  std::lock_guard lk(n.mu);
  if (!supported_namespace(name)) return err(ENODATA);
  SFS_TRY(load_xattrs(*cache_, n));
  auto it = n.xattrs->find(std::string(name));
  if (it == n.xattrs->end()) return err(ENODATA);
  return it->second;
}

Result<std::string> MountedFs::listxattr(uint64_t ino) {
  auto nr = get_inode(ino);
  if (!nr.ok()) return Error{nr.error()};
  Inode& n = **nr;
  std::lock_guard lk(n.mu);
  SFS_TRY(load_xattrs(*cache_, n));
  std::string out;
  for (auto& [k, v] : *n.xattrs) {
    out += k;
    out.push_back('\0');
  }
  return out;
}


bool MountedFs::has_privileges_to_kill(const Inode& n, uint32_t setid) {
  if (n.is_dir()) return false;
  if (n.disk.mode & setid) return true;
  // A file capability needs an xattr block, and most files have none.
  if (!n.disk.xattr_block) return false;
  return !n.xattrs || n.xattrs->count(std::string(kCapabilityXattr));
}

// Stores `next` as n's attributes without the privileges a change by an
// unprivileged writer drops: a file capability and the `setid` bits.
// n.mu held.
Status MountedFs::kill_privileges_locked(Handle& h, Inode& n, DiskInode next, uint32_t setid) {
  if (n.is_dir()) return store_inode(h, n, next);
  const uint32_t mode = next.mode;
  next.mode &= ~setid;
  if (n.disk.xattr_block) {
    SFS_TRY(load_xattrs(*cache_, n));
    if (n.xattrs->count(std::string(kCapabilityXattr))) {
      auto updated = *n.xattrs;
      updated.erase(std::string(kCapabilityXattr));
      return store_xattr_map(h, n, std::move(updated), next);
    }
  }
  if (next.mode != mode) next.ctime = now();
  return store_inode(h, n, next);
}

Result<bool> MountedFs::kill_privileges(uint64_t ino, PrivilegeCaller& caller) {
  auto nr = get_inode(ino);
  if (!nr.ok()) return Error{nr.error()};
  Inode& n = **nr;
  {
    std::lock_guard lk(n.mu);
    if (!has_privileges_to_kill(n, setid_dropped_for(n, caller))) return false;
  }
  if (read_only_) return err(EROFS);
  std::unique_lock op(n.op);
  Handle h = journal_->start(kXattrStoreCredits);  // the set may be rewritten
  std::lock_guard lk(n.mu);
  const uint32_t setid = setid_dropped_for(n, caller);
  if (!has_privileges_to_kill(n, setid)) return false;
  SFS_TRY(kill_privileges_locked(h, n, n.disk, setid));
  return true;
}

Status MountedFs::removexattr(uint64_t ino, std::string_view name) {
  if (read_only_) return err(EROFS);
  SFS_TRY(check_inode_flags(ino, FlagCheck::kAttrs));
  if (is_posix_acl_name(name)) return set_acl(ino, name, {}, 0);
  return change_inode(ino, [&](Handle& h, Inode& n) -> Status {
    SFS_TRY(load_xattrs(*cache_, n));
    auto updated = *n.xattrs;
    if (updated.erase(std::string(name)) == 0) return err(ENODATA);
    return store_xattr_map(h, n, std::move(updated), n.disk);
  }, kXattrStoreCredits);
}

}  // namespace stablefs
