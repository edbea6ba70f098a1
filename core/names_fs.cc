// Namespace operations: lookup, create, link, unlink, rename, readdir.
#include <dirent.h>
#include <linux/fs.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "core/base/checksum.h"
#include "core/base/log.h"
#include "core/mounted_fs.h"

namespace stablefs {
namespace {

constexpr uint32_t kMaxLinks = 65000;

bool is_dot(std::string_view name) { return name == "." || name == ".."; }

uint8_t dtype_of(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return kTypeReg;
    case S_IFDIR: return kTypeDir;
    case S_IFLNK: return kTypeLnk;
    case S_IFCHR: return kTypeChr;
    case S_IFBLK: return kTypeBlk;
    case S_IFIFO: return kTypeFifo;
    case S_IFSOCK: return kTypeSock;
  }
  return kTypeUnknown;
}

// A directory's record after an entry in it changed at t.
DiskInode touched(DiskInode d, Timespec t) {
  d.mtime = d.ctime = t;
  return d;
}

// Locks the mu of up to four inodes, each once, in ino order (the order
// core/inode.h gives for two inodes' mu); nulls are skipped.
class InodeLocks {
 public:
  explicit InodeLocks(std::initializer_list<Inode*> nodes) {
    for (Inode* n : nodes)
      if (n && std::find(held_.begin(), held_.end(), n) == held_.end()) held_.push_back(n);
    std::sort(held_.begin(), held_.end(), [](Inode* a, Inode* b) { return a->ino < b->ino; });
    for (Inode* n : held_) n->mu.lock();
  }
  ~InodeLocks() { unlock(); }
  InodeLocks(const InodeLocks&) = delete;
  InodeLocks& operator=(const InodeLocks&) = delete;
  void unlock() {
    for (auto it = held_.rbegin(); it != held_.rend(); ++it) (*it)->mu.unlock();
    held_.clear();
  }

 private:
  std::vector<Inode*> held_;
};

}  // namespace

Result<Attr> MountedFs::lookup(uint64_t parent, std::string_view name) {
  if (name.size() > kMaxNameLen) return err(ENAMETOOLONG);
  if (name == ".") return lookup_by_id(parent);
  auto dir = get_inode(parent);
  if (!dir.ok()) return Error{dir.error()};
  std::shared_lock op((*dir)->op);
  uint64_t ino;
  {
    std::lock_guard lk((*dir)->mu);
    if (!(*dir)->is_dir()) return err(ENOTDIR);
    if (name == ".") {
      ino = parent;
    } else if (name == "..") {
      ino = (*dir)->disk.parent();
    } else {
      SFS_TRY(load_dir(**dir));
      auto e = (*dir)->dir->lookup(name);
      if (!e) return err(ENOENT);
      ino = e->ino;
    }
  }
  auto n = get_inode(ino);
  if (!n.ok()) {
    SFS_LOG("directory %llu: entry '%.*s' points to unusable inode %llu",
            (unsigned long long)parent, int(name.size()), name.data(), (unsigned long long)ino);
    return err(EUCLEAN);
  }
  std::lock_guard lk((*n)->mu);
  (*n)->lookups++;
  return to_attr(**n);
}

// LOOKUP of "." under export support (fs/capabilities.cc): the kernel
// asks for an inode it no longer holds by node id alone (open_by_handle_at,
// NFS), for any file type, and compares the generation we answer with the
// one in the handle. An inode whose last link is gone is not handed out
// again (ENOENT, which the kernel turns into ESTALE); a free slot is
// ENOENT from get_inode, a reused one carries a newer generation.
Result<Attr> MountedFs::lookup_by_id(uint64_t ino) {
  auto n = get_inode(ino);
  if (!n.ok()) return Error{n.error()};
  std::lock_guard lk((*n)->mu);
  if ((*n)->disk.nlink == 0 || (*n)->freed) return err(ENOENT);
  (*n)->lookups++;
  return to_attr(**n);
}

Directory::GrowFn MountedFs::dir_grower(Inode& dir) {
  return [this, &dir](Handle& h) -> Result<std::shared_ptr<MetaBuffer>> {
    uint32_t idx = uint32_t(dir.disk.size / kBlockSize);
    uint64_t goal = 0;
    if (idx > 0)
      if (auto e = dir.map->find(idx - 1)) goal = e->physical + (idx - 1 - e->logical) + 1;
    auto r = alloc_->alloc_blocks(h, goal, 1);
    if (!r.ok()) return Error{r.error()};
    std::vector<PhysRange> replaced;
    Status mapped = dir.map->map(h, *cache_, node_allocator(r->start), idx, 1, r->start, false,
                                 &replaced);
    if (!mapped.ok()) {
      // A tree node could not be had (ENOSPC): the block goes back, or the
      // bitmap would keep it for nobody.
      (void)alloc_->free_blocks(h, *r);
      return Error{mapped.error()};
    }
    dir.disk.size += kBlockSize;
    dir.disk.blocks += 1;
    return cache_->create(r->start, kMagicDirectory, dir.ino);
  };
}

Result<Attr> MountedFs::create_node(uint64_t parent, std::string_view name, uint32_t mode,
                                    uint64_t rdev, const Creds& c,
                                    std::string_view symlink_target, bool linkable) {
  if (read_only_) return err(EROFS);
  const bool tmpfile = name.empty();
  if (is_dot(name)) return err(EEXIST);
  if (!tmpfile) SFS_TRY(Directory::check_name(name));
  SFS_TRY(check_inode_flags(parent, FlagCheck::kAddEntry));
  auto dirr = get_inode(parent);
  if (!dirr.ok()) return Error{dirr.error()};
  Inode& dir = **dirr;
  std::unique_lock op(dir.op);
  uint32_t gid = c.gid;
  InheritedAcls acls;
  {
    std::lock_guard lk(dir.mu);
    if (!dir.is_dir()) return err(ENOTDIR);
    if (dir.disk.nlink == 0) return err(ENOENT);  // removed while we waited
    SFS_TRY(load_dir(dir));
    if (!tmpfile && dir.dir->lookup(name)) return err(EEXIST);
    if (S_ISDIR(mode) && dir.disk.nlink >= kMaxLinks) return err(EMLINK);
    // BSD group semantics under a setgid directory, as ext4 does.
    if (dir.disk.mode & S_ISGID) {
      gid = dir.disk.gid;
      if (S_ISDIR(mode)) mode |= S_ISGID;
    }
    auto inherited = inherit_acls_locked(dir, &mode, c.umask);
    if (!inherited.ok()) return Error{inherited.error()};
    acls = std::move(*inherited);
  }
  Handle h = journal_->start();
  {
    // Pinned first: once the entry is added, storing the directory can no
    // longer fail on a read (see pin_inode).
    std::lock_guard lk(dir.mu);
    SFS_TRY(pin_inode(h, dir));
  }
  auto nr = new_inode(h, mode, c.uid, gid, rdev, parent);
  if (!nr.ok()) return Error{nr.error()};
  Inode& n = **nr;
  Status added;
  {
    std::lock_guard lk(n.mu);
    n.lookups++;
    if (tmpfile) {
      // An orphan from the start: a crash before link() names it leaves
      // it to the next mount's orphan cleanup, as an unlinked open file.
      n.disk.nlink = 0;
      n.linkable = linkable;
    }
    if (S_ISLNK(mode)) added = store_symlink_target(h, n, symlink_target);
    if (added.ok()) added = store_inherited_acls(h, n, acls);
    if (added.ok()) added = store_inode(h, n);
  }
  if (added.ok() && !tmpfile) {
    std::lock_guard lk(dir.mu);
    added = fail_point("create: add the entry");
    if (added.ok()) added = dir.dir->add(h, name, n.ino, dtype_of(mode), dir_grower(dir));
    if (added.ok()) {
      DiskInode next = touched(dir.disk, n.disk.ctime);
      if (S_ISDIR(mode)) next.nlink++;
      added = store_inode(h, dir, next);
    }
  }
  if (!added.ok()) {
    // Undo the inode (and its target block): it was never visible.
    op.unlock();
    abandon_new_inode(h, *nr);
    return Error{added.error()};
  }
  h.stop();
  std::lock_guard lk(n.mu);
  return to_attr(n);
}

// A symlink's target must be durable in the same transaction as its
// directory entry: a committed entry with an empty target is a broken
// promise after fsync(dir). Short targets live in the inode. A long one
// goes to a data block allocated in this handle and written (and waited
// for) before the handle stops, so ordered mode puts it on disk before
// the commit that maps it, and its checksum is recorded with the mapping.
// The block is new in the running transaction, so no committed checksum
// refers to it. n.mu held.
Status MountedFs::store_symlink_target(Handle& h, Inode& n, std::string_view target) {
  n.disk.size = target.size();
  if (target.size() <= kInodeRootSize) {
    n.disk.flags |= kInodeInlineData;
    std::memcpy(n.disk.root.data(), target.data(), target.size());
    return Status::Ok();
  }
  if (target.size() > kBlockSize) return err(ENAMETOOLONG);
  SFS_TRY(load_map(n));
  auto r = alloc_->alloc_blocks(h, 0, 1);
  if (!r.ok()) return Error{r.error()};
  AlignedBlock block;
  std::memset(block.data(), 0, kBlockSize);
  std::memcpy(block.data(), target.data(), target.size());
  uint64_t checksum = block_checksum(r->start, block.data(), kBlockSize);
  n.disk.blocks += 1;  // from here on, evicting the inode frees the block
  std::vector<PhysRange> replaced;
  SFS_TRY(n.map->map(h, *cache_, node_allocator(r->start), 0, 1, r->start, false, &replaced));
  SFS_TRY(csums_->set(h, r->start, checksum));
  Status w = dev_->write(r->start, block.data(), kBlockSize);
  if (!w.ok()) {
    SFS_LOG("symlink inode %llu: writing its target to block %llu failed: %s",
            (unsigned long long)n.ino, (unsigned long long)r->start, std::strerror(w.error()));
    return err(EIO);
  }
  c_->blocks_written++;
  return Status::Ok();
}

Result<Attr> MountedFs::mknod(uint64_t parent, std::string_view name, uint32_t mode,
                              uint64_t rdev, const Creds& c) {
  uint32_t type = mode & S_IFMT;
  if (type == 0) mode |= S_IFREG;
  else if (type != S_IFREG && type != S_IFCHR && type != S_IFBLK && type != S_IFIFO &&
           type != S_IFSOCK)
    return err(EINVAL);
  return create_node(parent, name, mode, rdev, c, {});
}

Result<Attr> MountedFs::tmpfile(uint64_t parent, uint32_t mode, bool linkable, const Creds& c) {
  return create_node(parent, {}, S_IFREG | (mode & 07777), 0, c, {}, linkable);
}

Result<Attr> MountedFs::mkdir(uint64_t parent, std::string_view name, uint32_t mode,
                              const Creds& c) {
  return create_node(parent, name, S_IFDIR | (mode & 07777), 0, c, {});
}

Result<Attr> MountedFs::symlink(uint64_t parent, std::string_view name,
                                std::string_view target, const Creds& c) {
  if (target.empty()) return err(ENOENT);
  if (target.size() >= 4096) return err(ENAMETOOLONG);
  return create_node(parent, name, S_IFLNK | 0777, 0, c, target);
}

Result<std::string> MountedFs::readlink(uint64_t ino) {
  auto nr = get_inode(ino);
  if (!nr.ok()) return Error{nr.error()};
  Inode& n = **nr;
  uint64_t size;
  {
    std::lock_guard lk(n.mu);
    if (!n.is_lnk()) return err(EINVAL);
    size = n.disk.size;
    if (n.disk.flags & kInodeInlineData) {
      std::string out(reinterpret_cast<const char*>(n.disk.root.data()),
                      std::min<uint64_t>(size, kInodeRootSize));
      if (size > kInodeRootSize || size == 0 || out.find('\0') != std::string::npos)
        return err(EUCLEAN);
      return out;
    }
  }
  // Size 0 would read nothing and hand the kernel an empty target.
  if (size == 0 || size >= 4096) return err(EUCLEAN);
  std::string out(size, '\0');
  std::shared_lock op(n.op);
  auto r = read_locked(n, 0, size, out.data());
  if (!r.ok()) return Error{r.error()};
  // A target never holds a NUL: one here means its block is missing (a
  // hole reads as zeros), which must not reach the kernel as "" or as a
  // shorter path.
  if (*r != size || out.find('\0') != std::string::npos) {
    SFS_LOG("symlink inode %llu: stored target does not match its size %llu",
            (unsigned long long)ino, (unsigned long long)size);
    return err(EUCLEAN);
  }
  return out;
}

Result<Attr> MountedFs::link(uint64_t ino, uint64_t new_parent, std::string_view new_name) {
  if (read_only_) return err(EROFS);
  if (is_dot(new_name)) return err(EEXIST);
  SFS_TRY(Directory::check_name(new_name));
  SFS_TRY(check_inode_flags(ino, FlagCheck::kUnlink));
  SFS_TRY(check_inode_flags(new_parent, FlagCheck::kAddEntry));
  auto dirr = get_inode(new_parent);
  if (!dirr.ok()) return Error{dirr.error()};
  auto nr = get_inode(ino);
  if (!nr.ok()) return Error{nr.error()};
  Inode& dir = **dirr;
  Inode& n = **nr;
  std::unique_lock dop(dir.op);
  std::unique_lock nop(n.op, std::defer_lock);
  if (&n != &dir) nop.lock();
  {
    std::scoped_lock lk(dir.mu, n.mu);
    if (!dir.is_dir()) return err(ENOTDIR);
    if (n.is_dir()) return err(EPERM);
    if (dir.disk.nlink == 0 || (n.disk.nlink == 0 && !n.linkable)) return err(ENOENT);
    if (n.disk.nlink >= kMaxLinks) return err(EMLINK);
    SFS_TRY(load_dir(dir));
    if (dir.dir->lookup(new_name)) return err(EEXIST);
  }
  Handle h = journal_->start();
  std::scoped_lock lk(dir.mu, n.mu);
  SFS_TRY(pin_inode(h, dir));
  SFS_TRY(pin_inode(h, n));
  SFS_TRY(dir.dir->add(h, new_name, n.ino, dtype_of(n.disk.mode), dir_grower(dir)));
  Timespec t = now();
  SFS_TRY(store_inode(h, dir, touched(dir.disk, t)));
  DiskInode next = n.disk;
  next.nlink++;
  next.ctime = t;
  SFS_TRY(store_inode(h, n, next));
  n.linkable = false;  // named once; unlinked again, it stays unlinked (as the VFS)
  n.lookups++;
  return to_attr(n);
}

// The inode `name` names in `dir` (dir.op held by the caller).
Result<InodeRef> MountedFs::child_of(Inode& dir, std::string_view name) {
  uint64_t ino;
  {
    std::lock_guard lk(dir.mu);
    if (!dir.is_dir()) return err(ENOTDIR);
    SFS_TRY(load_dir(dir));
    auto e = dir.dir->lookup(name);
    if (!e) return err(ENOENT);
    ino = e->ino;
  }
  auto nr = get_inode(ino);
  if (!nr.ok()) return err(EUCLEAN);  // an entry naming a free inode
  return nr;
}

Status MountedFs::unlink(uint64_t parent, std::string_view name) {
  if (read_only_) return err(EROFS);
  if (name.size() > kMaxNameLen) return err(ENAMETOOLONG);
  SFS_TRY(check_entry_removable(parent, name));
  auto dirr = get_inode(parent);
  if (!dirr.ok()) return Error{dirr.error()};
  Inode& dir = **dirr;
  std::unique_lock dop(dir.op);
  auto nr = child_of(dir, name);
  if (!nr.ok()) return Error{nr.error()};
  Inode& n = **nr;
  std::unique_lock nop(n.op);
  {
    Handle h = journal_->start();
    std::scoped_lock lk(dir.mu, n.mu);
    if (n.is_dir()) return err(EISDIR);
    SFS_TRY(pin_inode(h, dir));
    SFS_TRY(pin_inode(h, n));
    SFS_TRY(dir.dir->remove(h, name));
    Timespec t = now();
    SFS_TRY(store_inode(h, dir, touched(dir.disk, t)));
    DiskInode next = n.disk;
    if (next.nlink > 0) next.nlink--;
    next.ctime = t;
    SFS_TRY(store_inode(h, n, next));
  }
  nop.unlock();
  dop.unlock();
  maybe_evict(*nr);
  return Status::Ok();
}

Status MountedFs::rmdir(uint64_t parent, std::string_view name) {
  if (read_only_) return err(EROFS);
  if (name.size() > kMaxNameLen) return err(ENAMETOOLONG);
  if (name == ".") return err(EINVAL);
  SFS_TRY(check_entry_removable(parent, name));
  if (name == "..") return err(ENOTEMPTY);
  auto dirr = get_inode(parent);
  if (!dirr.ok()) return Error{dirr.error()};
  Inode& dir = **dirr;
  std::unique_lock dop(dir.op);
  auto nr = child_of(dir, name);
  if (!nr.ok()) return Error{nr.error()};
  Inode& n = **nr;
  std::unique_lock nop(n.op);
  {
    std::lock_guard lk(n.mu);
    if (!n.is_dir()) return err(ENOTDIR);
    SFS_TRY(load_dir(n));
    if (!n.dir->empty()) return err(ENOTEMPTY);
  }
  {
    Handle h = journal_->start();
    std::scoped_lock lk(dir.mu, n.mu);
    SFS_TRY(pin_inode(h, dir));
    SFS_TRY(pin_inode(h, n));
    SFS_TRY(dir.dir->remove(h, name));
    Timespec t = now();
    DiskInode parent_next = touched(dir.disk, t);
    if (parent_next.nlink > 2) parent_next.nlink--;
    SFS_TRY(store_inode(h, dir, parent_next));
    DiskInode next = n.disk;
    next.nlink = 0;
    next.ctime = t;
    SFS_TRY(store_inode(h, n, next));
  }
  nop.unlock();
  dop.unlock();
  maybe_evict(*nr);
  return Status::Ok();
}

Status MountedFs::rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                         std::string_view new_name, unsigned flags, const Creds& c) {
  if (read_only_) return err(EROFS);
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT)) return err(EINVAL);
  // As the VFS: an exchange leaves no name behind to whiten, nor to keep.
  if ((flags & RENAME_EXCHANGE) && (flags & (RENAME_NOREPLACE | RENAME_WHITEOUT)))
    return err(EINVAL);
  if (name.size() > kMaxNameLen || new_name.size() > kMaxNameLen) return err(ENAMETOOLONG);
  if (is_dot(name) || is_dot(new_name)) return err(EBUSY);
  SFS_TRY(Directory::check_name(new_name));
  // The source leaves its directory, the target (if any) is replaced.
  SFS_TRY(check_entry_removable(parent, name));
  SFS_TRY(check_inode_flags(new_parent, FlagCheck::kAddEntry));
  SFS_TRY(check_entry_removable(new_parent, new_name));
  std::lock_guard rename_lock(rename_mu_);
  auto srcr = get_inode(parent);
  if (!srcr.ok()) return Error{srcr.error()};
  auto dstr = get_inode(new_parent);
  if (!dstr.ok()) return Error{dstr.error()};
  // Directory op locks in ino order (one lock when both are the same).
  Inode* first = srcr->get();
  Inode* second = dstr->get();
  if (first->ino > second->ino) std::swap(first, second);
  std::unique_lock l1(first->op);
  std::unique_lock<std::shared_mutex> l2;
  if (second != first) l2 = std::unique_lock(second->op);
  return rename_locked(*srcr, name, *dstr, new_name, flags, c);
}

// What a rename found under its directories' op locks, and will change.
struct MountedFs::RenamePlan {
  InodeRef srcd, dstd;  // the directories (one object when they are the same)
  DirEntry se;          // the entry that moves
  std::optional<DirEntry> de;  // what new_name names now, if anything
  InodeRef moved, victim;      // their inodes (victim null without de)
  InodeRef whiteout;           // RENAME_WHITEOUT: what takes the source's name
  bool moved_dir = false, victim_dir = false;
};

// A change failed after an earlier step of it was journalled, and can be
// neither finished nor taken back: the journal aborts, so the running
// transaction, with the half-done change, never commits, and the
// filesystem turns read-only; the next mount replays what was committed.
Status MountedFs::abort_half_done(Status s, uint64_t dir_ino) {
  SFS_LOG("directory %llu: a change failed half done (%s): aborting the journal",
          (unsigned long long)dir_ino, std::strerror(s.error()));
  journal_->abort(s.error());
  return s;
}

Status MountedFs::rename_locked(InodeRef& srcd, std::string_view name, InodeRef& dstd,
                                std::string_view new_name, unsigned flags, const Creds& c) {
  auto planned = plan_rename(srcd, name, dstd, new_name, flags);
  if (!planned.ok()) return Error{planned.error()};
  RenamePlan& p = *planned;
  if (p.de && p.de->ino == p.se.ino) return Status::Ok();  // same inode: POSIX no-op
  Handle h = journal_->start();
  if (flags & RENAME_WHITEOUT) {
    // Made before the inode locks, as create_node makes its inode: no one
    // can reach it yet, and new_inode takes its mu.
    auto w = new_whiteout(h, *p.srcd, c);
    if (!w.ok()) return Error{w.error()};
    p.whiteout = *w;
  }
  InodeLocks locks{p.srcd.get(), p.dstd.get(), p.moved.get(), p.victim.get()};
  Status applied = apply_rename(h, p, name, new_name, flags);
  if (!applied.ok()) {
    if (p.whiteout) {
      locks.unlock();
      abandon_new_inode(h, p.whiteout);
    }
    return applied;
  }
  if (p.victim && !(flags & RENAME_EXCHANGE)) {
    // Unlock before evicting: eviction takes the victim's op lock. The
    // victim's op lock is not held here, only the parents'.
    locks.unlock();
    h.stop();
    maybe_evict(p.victim);
  }
  return Status::Ok();
}

// Looks both names up and checks that the rename is allowed; changes
// nothing. The directories' op locks held.
Result<MountedFs::RenamePlan> MountedFs::plan_rename(InodeRef& srcd, std::string_view name,
                                                     InodeRef& dstd, std::string_view new_name,
                                                     unsigned flags) {
  RenamePlan p;
  p.srcd = srcd;
  p.dstd = dstd;
  std::optional<DirEntry> se;
  {
    std::scoped_lock lk(srcd->mu);
    if (!srcd->is_dir()) return err(ENOTDIR);
    SFS_TRY(load_dir(*srcd));
    se = srcd->dir->lookup(name);
  }
  {
    std::scoped_lock lk(dstd->mu);
    if (!dstd->is_dir()) return err(ENOTDIR);
    if (dstd->disk.nlink == 0) return err(ENOENT);
    SFS_TRY(load_dir(*dstd));
    p.de = dstd->dir->lookup(new_name);
  }
  if (!se) return err(ENOENT);
  p.se = *se;
  if ((flags & RENAME_EXCHANGE) && !p.de) return err(ENOENT);
  if (p.de && (flags & RENAME_NOREPLACE)) return err(EEXIST);
  if (p.de && p.de->ino == p.se.ino) return p;

  auto mr = get_inode(p.se.ino);
  if (!mr.ok()) return err(EUCLEAN);
  p.moved = *mr;
  if (p.de) {
    auto vr = get_inode(p.de->ino);
    if (!vr.ok()) return err(EUCLEAN);
    p.victim = *vr;
  }
  p.moved_dir = p.se.type == kTypeDir;
  p.victim_dir = p.de && p.de->type == kTypeDir;
  if (srcd != dstd) {
    if (p.moved_dir) SFS_TRY(check_not_ancestor(p.moved->ino, dstd->ino));
    if ((flags & RENAME_EXCHANGE) && p.victim_dir)
      SFS_TRY(check_not_ancestor(p.victim->ino, srcd->ino));
  }
  if (!(flags & RENAME_EXCHANGE) && p.victim) {
    if (p.moved_dir && !p.victim_dir) return err(ENOTDIR);
    if (!p.moved_dir && p.victim_dir) return err(EISDIR);
    if (p.victim_dir) {
      std::lock_guard lk(p.victim->mu);
      SFS_TRY(load_dir(*p.victim));
      if (!p.victim->dir->empty()) return err(ENOTEMPTY);
    }
  }
  return p;
}

// EINVAL when directory dir_ino is `into` or one of its ancestors: a
// directory must not move into its own subtree.
Status MountedFs::check_not_ancestor(uint64_t dir_ino, uint64_t into) {
  uint64_t cur = into;
  for (int depth = 0; cur != kRootIno; depth++) {
    if (cur == dir_ino) return err(EINVAL);
    if (depth > 100000) return err(ELOOP);
    auto c = get_inode(cur);
    if (!c.ok()) return err(EUCLEAN);
    std::lock_guard lk((*c)->mu);
    cur = (*c)->disk.parent();
  }
  return dir_ino == kRootIno ? err(EINVAL) : Status::Ok();
}

// The inode a RENAME_WHITEOUT leaves under the source's name: a character
// device 0:0 of mode 0 (the VFS's WHITEOUT_MODE and WHITEOUT_DEV), owned
// as a file created in `dir` would be. No ACL is inherited: mode 0 grants
// nothing to mask. Stored in h, linked by apply_rename. dir's op held.
Result<InodeRef> MountedFs::new_whiteout(Handle& h, Inode& dir, const Creds& c) {
  uint32_t gid = c.gid;
  {
    std::lock_guard lk(dir.mu);
    if (dir.disk.mode & S_ISGID) gid = dir.disk.gid;
  }
  return new_inode(h, S_IFCHR, c.uid, gid, 0, dir.ino);
}

// Undoes new_inode(h, ...) for an inode that never got a name: it is
// freed, with whatever it holds, once h stops. h is stopped here.
void MountedFs::abandon_new_inode(Handle& h, const InodeRef& n) {
  {
    std::lock_guard lk(n->mu);
    n->disk.nlink = 0;
    n->lookups = 0;
    (void)store_inode(h, *n);
  }
  h.stop();
  maybe_evict(n);
}

// Changes the entries, then stores the four inodes. Every inode is pinned
// first and the first entry change fails with nothing changed, so an error
// leaves memory and journal as they were, except when the second entry
// change fails after the first: that can be neither finished nor taken
// back, so the journal aborts and the half-done rename never commits.
// Every inode's mu held.
Status MountedFs::apply_rename(Handle& h, const RenamePlan& p, std::string_view name,
                               std::string_view new_name, unsigned flags) {
  for (Inode* n : {p.srcd.get(), p.dstd.get(), p.moved.get(), p.victim.get()})
    if (n) SFS_TRY(pin_inode(h, *n));
  const bool exchange = flags & RENAME_EXCHANGE;
  if (exchange) {
    SFS_TRY(p.srcd->dir->replace(h, name, p.victim->ino, p.de->type));
    Status s = fail_point("rename: the second entry");
    if (s.ok()) s = p.dstd->dir->replace(h, new_name, p.moved->ino, p.se.type);
    if (!s.ok()) return abort_half_done(s, p.dstd->ino);
  } else {
    // After a whiteout was stored, this is the step that can fail first.
    SFS_TRY(fail_point("rename: the first entry"));
    if (p.victim) SFS_TRY(p.dstd->dir->replace(h, new_name, p.moved->ino, p.se.type));
    else SFS_TRY(p.dstd->dir->add(h, new_name, p.moved->ino, p.se.type, dir_grower(*p.dstd)));
    Status s = fail_point("rename: the second entry");
    if (s.ok() && p.whiteout) s = p.srcd->dir->replace(h, name, p.whiteout->ino, kTypeChr);
    else if (s.ok()) s = p.srcd->dir->remove(h, name);
    if (!s.ok()) return abort_half_done(s, p.srcd->ino);
  }

  // The inodes' new records. A directory that changes parents carries one
  // link of its old parent's to the new one.
  const Timespec t = now();
  const bool across = p.srcd != p.dstd;
  int src_links = 0, dst_links = 0;
  DiskInode moved = p.moved->disk;
  moved.ctime = t;
  if (across && p.moved_dir) {
    moved.set_parent(p.dstd->ino);
    src_links--, dst_links++;
  }
  if (p.victim) {
    DiskInode victim = p.victim->disk;
    victim.ctime = t;
    if (exchange) {
      if (across && p.victim_dir) {
        victim.set_parent(p.srcd->ino);
        src_links++, dst_links--;
      }
    } else if (p.victim_dir) {
      victim.nlink = 0;
      dst_links--;
    } else if (victim.nlink > 0) {
      victim.nlink--;
    }
    SFS_TRY(store_inode(h, *p.victim, victim));
  }
  SFS_TRY(store_inode(h, *p.moved, moved));
  DiskInode src = touched(p.srcd->disk, t);
  src.nlink += across ? src_links : src_links + dst_links;
  SFS_TRY(store_inode(h, *p.srcd, src));
  if (across) {
    DiskInode dst = touched(p.dstd->disk, t);
    dst.nlink += dst_links;
    SFS_TRY(store_inode(h, *p.dstd, dst));
  }
  return Status::Ok();
}

Status MountedFs::opendir(uint64_t ino) {
  auto n = get_inode(ino);
  if (!n.ok()) return Error{n.error()};
  std::lock_guard lk((*n)->mu);
  return (*n)->is_dir() ? Status::Ok() : Status(err(ENOTDIR));
}

Status MountedFs::readdir(uint64_t ino, uint64_t after,
                          const std::function<bool(const DirListEntry&)>& emit) {
  auto nr = get_inode(ino);
  if (!nr.ok()) return Error{nr.error()};
  Inode& n = **nr;
  // Collect a batch under the locks, then emit without them: the caller
  // may call back into the engine (readdirplus looks entries up).
  std::vector<DirListEntry> batch;
  {
    std::shared_lock op(n.op);
    std::lock_guard lk(n.mu);
    if (!n.is_dir()) return err(ENOTDIR);
    SFS_TRY(load_dir(n));
    if (after < 1) batch.push_back({".", n.ino, DT_DIR, 1});
    if (after < 2) batch.push_back({"..", n.disk.parent(), DT_DIR, 2});
    n.dir->list(std::max<uint64_t>(after, 2), [&](const DirEntry& e, uint64_t cookie) {
      batch.push_back({e.name, e.ino, e.type, cookie});
      return batch.size() < 512;
    });
  }
  for (const auto& e : batch)
    if (!emit(e)) break;
  touch_atime(n);
  return Status::Ok();
}

Status MountedFs::fsyncdir(uint64_t ino, bool datasync) {
  auto n = get_inode(ino);
  if (!n.ok()) return Error{n.error()};
  // Directory changes are metadata: a journal commit makes them durable.
  return journal_->commit();
}

}  // namespace stablefs
