// POSIX ACLs in the engine. The kernel enforces them (FUSE_POSIX_ACL turns
// on default_permissions and makes it read the ACL through getxattr); the
// filesystem stores them and keeps three rules the kernel leaves to it
// (fs/fuse/acl.c: "Fuse userspace is responsible for updating access
// permissions in the inode"):
//  - setting an access ACL sets the permission bits from it, and an ACL
//    the mode says all of is not stored at all (posix_acl_update_mode);
//  - chmod rewrites the stored access ACL's owner, mask (or group) and
//    other entries (posix_acl_chmod);
//  - a node created in a directory with a default ACL inherits it, masked
//    by the requested mode, and the umask is not applied; without one the
//    umask is (posix_acl_create). The kernel sends the umask unapplied
//    because we ask for FUSE_DONT_MASK (fs/capabilities.cc).
// The values are stored as ordinary xattrs in the inode's xattr block.
#include <sys/stat.h>
#include <sys/xattr.h>

#include "core/mounted_fs.h"
#include "core/posix_acl.h"
#include "core/xattr_block.h"

namespace stablefs {

// Replaces (or with `value` nullopt, erases) one xattr of n in h, with
// `next` the attributes n is to get (its xattr block may be allocated or
// freed there); updates the inode's map once the block is stored. The
// caller stores `next`. n.mu held, xattrs loaded.
Status MountedFs::store_one_xattr(Handle& h, Inode& n, DiskInode& next, std::string_view name,
                                  const std::optional<std::string>& value) {
  auto updated = *n.xattrs;
  if (value) updated[std::string(name)] = *value;
  else if (updated.erase(std::string(name)) == 0) return Status::Ok();
  if (!xattrs_fit(updated)) return err(ENOSPC);
  SFS_TRY(store_xattrs(h, xattr_space(), n.ino, next, updated));
  *n.xattrs = std::move(updated);
  return Status::Ok();
}

Status MountedFs::set_acl(uint64_t ino, std::string_view name, std::string_view value,
                          int flags) {
  Acl acl;
  if (!value.empty()) {
    auto decoded = decode_acl(value);
    if (!decoded.ok()) return Error{decoded.error()};
    acl = std::move(*decoded);
  }
  return change_inode(ino, [&](Handle& h, Inode& n) -> Status {
    const bool is_default = name == kAclDefaultXattr;
    // Only directories have a default ACL; removing one elsewhere is a no-op.
    if (is_default && !n.is_dir()) return acl.empty() ? Status::Ok() : Status(err(EACCES));
    SFS_TRY(load_xattrs(*cache_, n));
    SFS_TRY(check_xattr_flags(*n.xattrs, name, flags));
    std::optional<std::string> stored;
    if (!acl.empty()) stored = encode_acl(acl);
    uint32_t mode = n.disk.mode;
    if (!is_default && !acl.empty()) {
      bool equivalent = false;
      mode = (mode & ~0777u) | acl_mode_bits(acl, &equivalent);
      if (flags & kSetxattrAclKillSgid) mode &= ~uint32_t(S_ISGID);
      if (equivalent) stored.reset();
    }
    // The record is journalled first (the one read a store can fail on),
    // and the mode changes only once the xattr block holds the ACL it
    // follows.
    SFS_TRY(pin_inode(h, n));
    DiskInode next = n.disk;
    SFS_TRY(store_one_xattr(h, n, next, name, stored));
    next.mode = mode;
    next.ctime = now();
    return store_inode(h, n, next);
  }, kXattrStoreCredits);
}

Status MountedFs::chmod_acl_locked(Handle& h, Inode& n, DiskInode& next) {
  if (!next.xattr_block) return Status::Ok();  // no xattrs, so no ACL
  SFS_TRY(load_xattrs(*cache_, n));
  auto it = n.xattrs->find(std::string(kAclAccessXattr));
  if (it == n.xattrs->end()) return Status::Ok();
  auto acl = decode_acl(it->second);
  if (!acl.ok()) return Error{EUCLEAN};
  acl_chmod(*acl, next.mode);
  return store_one_xattr(h, n, next, kAclAccessXattr, encode_acl(*acl));
}

Result<MountedFs::InheritedAcls> MountedFs::inherit_acls_locked(Inode& dir, uint32_t* mode,
                                                                uint32_t umask) {
  InheritedAcls out;
  if (S_ISLNK(*mode)) return out;  // symlinks are always 0777 and have no ACL
  std::optional<std::string> def;
  if (dir.disk.xattr_block) {
    SFS_TRY(load_xattrs(*cache_, dir));
    auto it = dir.xattrs->find(std::string(kAclDefaultXattr));
    if (it != dir.xattrs->end()) def = it->second;
  }
  if (!def) {
    *mode &= ~(umask & 0777);
    return out;
  }
  auto acl = decode_acl(*def);
  if (!acl.ok()) return Error{EUCLEAN};
  if (S_ISDIR(*mode)) out.default_acl = *def;
  bool equivalent = false;
  *mode = acl_create_masked(*acl, *mode, &equivalent);
  if (!equivalent) out.access_acl = encode_acl(*acl);
  return out;
}

Status MountedFs::store_inherited_acls(Handle& h, Inode& n, const InheritedAcls& acls) {
  if (!acls.access_acl && !acls.default_acl) return Status::Ok();
  SFS_TRY(load_xattrs(*cache_, n));
  DiskInode next = n.disk;
  if (acls.access_acl) SFS_TRY(store_one_xattr(h, n, next, kAclAccessXattr, acls.access_acl));
  if (acls.default_acl) SFS_TRY(store_one_xattr(h, n, next, kAclDefaultXattr, acls.default_acl));
  return store_inode(h, n, next);
}

}  // namespace stablefs
