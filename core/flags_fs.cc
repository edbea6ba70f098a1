// Inode flags in the engine: chattr's immutable, append-only, nodump,
// noatime and sync, stored in the inode (core/base/format.h) and enforced here. The
// kernel cannot enforce them for FUSE (it never learns them: a FUSE
// inode's i_flags carry no S_IMMUTABLE or S_APPEND), and it checks who may
// change them (owner, and CAP_LINUX_IMMUTABLE for immutable and append)
// before it sends the ioctl, so the engine only stores and enforces.
//
// Each changing call checks once at its start, before it takes its locks:
// a flag set by a concurrent chattr applies from the next call, as with a
// permission change.
#include "core/inode_flags.h"
#include "core/mounted_fs.h"

namespace stablefs {

Result<uint32_t> MountedFs::get_inode_flags(uint64_t ino) {
  auto nr = get_inode(ino);
  if (!nr.ok()) return Error{nr.error()};
  std::lock_guard lk((*nr)->mu);
  return fs_flags_of((*nr)->disk.flags);
}

Status MountedFs::set_inode_flags(uint64_t ino, uint32_t fs_flags) {
  if (read_only_) return err(EROFS);
  auto bits = disk_flags_from_fs(fs_flags);
  if (!bits.ok()) return Error{bits.error()};
  return change_inode(ino, [&](Handle& h, Inode& n) {
    n.disk.flags = (n.disk.flags & ~kUserFlagBits) | *bits;
    n.disk.ctime = now();
    return store_inode(h, n);
  });
}

Status MountedFs::check_inode_flags(uint64_t ino, FlagCheck what,
                                    std::optional<uint64_t> write_at) {
  auto nr = get_inode(ino);
  if (!nr.ok()) return Status::Ok();  // the call itself reports it
  std::lock_guard lk((*nr)->mu);
  if (write_at && *write_at >= (*nr)->disk.size) what = FlagCheck::kAppend;
  if (int e = flags_forbid((*nr)->disk.flags, what)) return err(e);
  return Status::Ok();
}

// chattr +S (FS_SYNC_FL) on a file: its write(2)s and attribute changes
// return once durable, as under O_SYNC; the kernel cannot do it for us (a
// FUSE inode's i_flags never carry S_SYNC). On a directory it is stored
// only: changes of its names are not made synchronous.
bool MountedFs::has_sync_flag(Inode& n) {
  std::lock_guard lk(n.mu);
  return !n.is_dir() && (n.disk.flags & kInodeSync);
}

Status MountedFs::check_entry_removable(uint64_t dir, std::string_view name) {
  SFS_TRY(check_inode_flags(dir, FlagCheck::kRemoveEntry));
  auto dr = get_inode(dir);
  if (!dr.ok()) return Status::Ok();
  uint64_t child;
  {
    std::shared_lock op((*dr)->op);
    std::lock_guard lk((*dr)->mu);
    if (!(*dr)->is_dir() || !load_dir(**dr).ok()) return Status::Ok();
    auto e = (*dr)->dir->lookup(name);
    if (!e) return Status::Ok();
    child = e->ino;
  }
  return check_inode_flags(child, FlagCheck::kUnlink);
}

}  // namespace stablefs
