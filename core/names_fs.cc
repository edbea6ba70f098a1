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

Status check_name(std::string_view name) {
  if (name.size() > kMaxNameLen) return err(ENAMETOOLONG);
  if (name.empty() || name.find('/') != std::string_view::npos ||
      name.find('\0') != std::string_view::npos)
    return err(EINVAL);
  return Status::Ok();
}

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

void touch_dir(Inode& d, Timespec t) { d.disk.mtime = d.disk.ctime = t; }

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
      ino = (*dir)->disk.rdev ? (*dir)->disk.rdev : kRootIno;
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
    SFS_TRY(dir.map->map(h, *cache_, node_allocator(r->start), idx, 1, r->start, false, &replaced));
    dir.disk.size += kBlockSize;
    dir.disk.blocks += 1;
    return cache_->create(r->start, kMagicDirectory, dir.ino);
  };
}

Result<Attr> MountedFs::create_node(uint64_t parent, std::string_view name, uint32_t mode,
                                    uint64_t rdev, const Creds& c,
                                    std::string_view symlink_target) {
  if (read_only_) return err(EROFS);
  SFS_TRY(check_name(name));
  if (is_dot(name)) return err(EEXIST);
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
    if (dir.dir->lookup(name)) return err(EEXIST);
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
  auto nr = new_inode(h, mode, c.uid, gid, S_ISDIR(mode) ? parent : rdev);
  if (!nr.ok()) return Error{nr.error()};
  Inode& n = **nr;
  Status added;
  {
    std::lock_guard lk(n.mu);
    n.lookups++;
    if (S_ISLNK(mode)) added = store_symlink_target(h, n, symlink_target);
    if (added.ok()) added = store_inherited_acls(h, n, acls);
    if (added.ok()) added = store_inode(h, n);
  }
  if (added.ok()) {
    std::lock_guard lk(dir.mu);
    added = dir.dir->add(h, name, n.ino, dtype_of(mode), dir_grower(dir));
    if (added.ok()) {
      if (S_ISDIR(mode)) dir.disk.nlink++;
      touch_dir(dir, n.disk.ctime);
      added = store_inode(h, dir);
    }
  }
  if (!added.ok()) {
    // Undo the inode (and its target block): it was never visible.
    {
      std::lock_guard lk(n.mu);
      n.disk.nlink = 0;
      n.lookups = 0;
      (void)store_inode(h, n);
    }
    h.stop();
    op.unlock();
    maybe_evict(*nr);
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
  SFS_TRY(check_name(new_name));
  if (is_dot(new_name)) return err(EEXIST);
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
    if (dir.disk.nlink == 0 || n.disk.nlink == 0) return err(ENOENT);
    if (n.disk.nlink >= kMaxLinks) return err(EMLINK);
    SFS_TRY(load_dir(dir));
    if (dir.dir->lookup(new_name)) return err(EEXIST);
  }
  Handle h = journal_->start();
  std::scoped_lock lk(dir.mu, n.mu);
  SFS_TRY(dir.dir->add(h, new_name, n.ino, dtype_of(n.disk.mode), dir_grower(dir)));
  Timespec t = now();
  touch_dir(dir, t);
  SFS_TRY(store_inode(h, dir));
  n.disk.nlink++;
  n.disk.ctime = t;
  n.lookups++;
  SFS_TRY(store_inode(h, n));
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
    SFS_TRY(dir.dir->remove(h, name));
    Timespec t = now();
    touch_dir(dir, t);
    SFS_TRY(store_inode(h, dir));
    if (n.disk.nlink > 0) n.disk.nlink--;
    n.disk.ctime = t;
    SFS_TRY(store_inode(h, n));
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
    SFS_TRY(dir.dir->remove(h, name));
    Timespec t = now();
    touch_dir(dir, t);
    if (dir.disk.nlink > 2) dir.disk.nlink--;
    SFS_TRY(store_inode(h, dir));
    n.disk.nlink = 0;
    n.disk.ctime = t;
    SFS_TRY(store_inode(h, n));
  }
  nop.unlock();
  dop.unlock();
  maybe_evict(*nr);
  return Status::Ok();
}

Status MountedFs::rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                         std::string_view new_name, unsigned flags) {
  if (read_only_) return err(EROFS);
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return err(EINVAL);
  if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE)) return err(EINVAL);
  if (name.size() > kMaxNameLen || new_name.size() > kMaxNameLen) return err(ENAMETOOLONG);
  SFS_TRY(check_name(new_name));
  // The source leaves its directory, the target (if any) is replaced.
  SFS_TRY(check_entry_removable(parent, name));
  SFS_TRY(check_inode_flags(new_parent, FlagCheck::kAddEntry));
  SFS_TRY(check_entry_removable(new_parent, new_name));
  if (is_dot(name) || is_dot(new_name)) return err(EBUSY);
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
  return rename_locked(*srcr, name, *dstr, new_name, flags);
}

Status MountedFs::rename_locked(InodeRef& srcd, std::string_view name, InodeRef& dstd,
                                std::string_view new_name, unsigned flags) {
  std::optional<DirEntry> se, de;
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
    de = dstd->dir->lookup(new_name);
  }
  if (!se) return err(ENOENT);
  if ((flags & RENAME_EXCHANGE) && !de) return err(ENOENT);
  if (de && (flags & RENAME_NOREPLACE)) return err(EEXIST);
  if (de && de->ino == se->ino) return Status::Ok();  // same inode: POSIX no-op

  auto mr = get_inode(se->ino);
  if (!mr.ok()) return err(EUCLEAN);
  InodeRef moved = *mr;
  InodeRef victim;
  if (de) {
    auto vr = get_inode(de->ino);
    if (!vr.ok()) return err(EUCLEAN);
    victim = *vr;
  }
  bool moved_dir = se->type == kTypeDir;
  bool victim_dir = de && de->type == kTypeDir;

  // A directory must not move into its own subtree.
  auto check_loop = [&](uint64_t dir_ino, uint64_t into) -> Status {
    uint64_t cur = into;
    for (int depth = 0; cur != kRootIno; depth++) {
      if (cur == dir_ino) return err(EINVAL);
      if (depth > 100000) return err(ELOOP);
      auto c = get_inode(cur);
      if (!c.ok()) return err(EUCLEAN);
      std::lock_guard lk((*c)->mu);
      cur = (*c)->disk.rdev ? (*c)->disk.rdev : kRootIno;
    }
    return dir_ino == kRootIno ? err(EINVAL) : Status::Ok();
  };
  if (srcd != dstd) {
    if (moved_dir) SFS_TRY(check_loop(moved->ino, dstd->ino));
    if ((flags & RENAME_EXCHANGE) && victim_dir) SFS_TRY(check_loop(victim->ino, srcd->ino));
  }
  if (!(flags & RENAME_EXCHANGE) && victim) {
    if (moved_dir && !victim_dir) return err(ENOTDIR);
    if (!moved_dir && victim_dir) return err(EISDIR);
    if (victim_dir) {
      std::lock_guard lk(victim->mu);
      SFS_TRY(load_dir(*victim));
      if (!victim->dir->empty()) return err(ENOTEMPTY);
    }
  }

  Handle h = journal_->start();
  std::vector<std::mutex*> mus{&srcd->mu};
  for (Inode* p : {dstd.get(), moved.get(), victim.get()})
    if (p && std::find(mus.begin(), mus.end(), &p->mu) == mus.end()) mus.push_back(&p->mu);
  std::sort(mus.begin(), mus.end());
  for (auto* m : mus) m->lock();  // address order: a fixed global order
  struct Unlock {
    std::vector<std::mutex*>& m;
    ~Unlock() {
      for (auto it = m.rbegin(); it != m.rend(); ++it) (*it)->unlock();
    }
  } unlock{mus};

  Timespec t = now();
  if (flags & RENAME_EXCHANGE) {
    SFS_TRY(srcd->dir->replace(h, name, victim->ino, de->type));
    SFS_TRY(dstd->dir->replace(h, new_name, moved->ino, se->type));
    if (srcd != dstd) {
      if (moved_dir) moved->disk.rdev = dstd->ino;
      if (victim_dir) victim->disk.rdev = srcd->ino;
      if (moved_dir && !victim_dir) { srcd->disk.nlink--; dstd->disk.nlink++; }
      if (victim_dir && !moved_dir) { dstd->disk.nlink--; srcd->disk.nlink++; }
    }
    victim->disk.ctime = t;
    SFS_TRY(store_inode(h, *victim));
  } else {
    if (victim) {
      SFS_TRY(dstd->dir->replace(h, new_name, moved->ino, se->type));
      if (victim_dir) {
        victim->disk.nlink = 0;
        dstd->disk.nlink--;
      } else if (victim->disk.nlink > 0) {
        victim->disk.nlink--;
      }
      victim->disk.ctime = t;
      SFS_TRY(store_inode(h, *victim));
    } else {
      SFS_TRY(dstd->dir->add(h, new_name, moved->ino, se->type, dir_grower(*dstd)));
    }
    SFS_TRY(srcd->dir->remove(h, name));
    if (moved_dir && srcd != dstd) {
      moved->disk.rdev = dstd->ino;
      srcd->disk.nlink--;
      dstd->disk.nlink++;
    }
  }
  moved->disk.ctime = t;
  SFS_TRY(store_inode(h, *moved));
  touch_dir(*srcd, t);
  SFS_TRY(store_inode(h, *srcd));
  if (dstd != srcd) {
    touch_dir(*dstd, t);
    SFS_TRY(store_inode(h, *dstd));
  }
  if (victim && !(flags & RENAME_EXCHANGE)) {
    // Unlock before evicting: eviction takes the victim's op lock. The
    // victim's op lock is not held here, only the parents'.
    for (auto it = mus.rbegin(); it != mus.rend(); ++it) (*it)->unlock();
    mus.clear();
    h.stop();
    maybe_evict(victim);
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
    if (after < 2) batch.push_back({"..", n.disk.rdev ? n.disk.rdev : kRootIno, DT_DIR, 2});
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
