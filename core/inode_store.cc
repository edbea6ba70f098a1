// Loading, creating, storing and releasing inodes.
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "core/base/log.h"
#include "core/mounted_fs.h"
#include "core/xattr_block.h"

namespace stablefs {

// Bound on the extents one truncate handle frees, so a single transaction
// never outgrows the journal however large the file.
constexpr size_t kExtentsPerTruncateHandle = 64;

Result<InodeRef> MountedFs::get_inode(uint64_t ino) {
  if (!itable_->valid(ino)) return err(ESTALE);
  {
    std::lock_guard lk(icache_mu_);
    if (auto it = icache_.find(ino); it != icache_.end()) return it->second;
  }
  auto d = itable_->read(ino);
  if (!d.ok()) return Error{d.error()};
  if (d->mode == 0) return err(ENOENT);
  auto n = std::make_shared<Inode>(ino);
  n->disk = *d;
  n->stored_size = d->size;
  std::lock_guard lk(icache_mu_);
  auto [it, inserted] = icache_.emplace(ino, n);
  return it->second;
}

Status MountedFs::load_map(Inode& n) {
  if (n.map) return Status::Ok();
  if (n.disk.flags & kInodeInlineData) {
    // Only short symlinks keep their bytes in the inode (their target is
    // read from there, never through a map).
    if (!S_ISLNK(n.disk.mode)) {
      SFS_LOG("inode %llu: inline data on an inode that is not a symlink",
              (unsigned long long)n.ino);
      return err(EUCLEAN);
    }
    n.map = std::make_unique<ExtentMap>(n.ino);  // inline data: no extents
    return Status::Ok();
  }
  auto m = ExtentMap::load(*cache_, n.ino, n.disk, sb_.total_blocks);
  if (!m.ok()) {
    SFS_LOG("inode %llu: extent map is corrupt", (unsigned long long)n.ino);
    return Error{m.error()};
  }
  n.map = std::move(*m);
  return Status::Ok();
}

Status MountedFs::load_dir(Inode& n) {
  if (n.dir) return Status::Ok();
  if (!n.is_dir()) return err(ENOTDIR);
  SFS_TRY(load_map(n));
  std::vector<std::shared_ptr<MetaBuffer>> blocks;
  uint64_t nblocks = n.disk.size / kBlockSize;
  for (uint64_t i = 0; i < nblocks; i++) {
    auto e = n.map->find(uint32_t(i));
    if (!e) {
      SFS_LOG("directory %llu: block %llu is not mapped", (unsigned long long)n.ino,
              (unsigned long long)i);
      return err(EUCLEAN);
    }
    auto buf = cache_->read(e->physical + (i - e->logical), kMagicDirectory);
    if (!buf.ok()) return Error{buf.error()};
    blocks.push_back(std::move(*buf));
  }
  auto d = Directory::load(n.ino, std::move(blocks));
  if (!d.ok()) {
    SFS_LOG("directory %llu is corrupt", (unsigned long long)n.ino);
    return Error{d.error()};
  }
  n.dir = std::move(*d);
  return Status::Ok();
}

Status MountedFs::store_inode(Handle& h, Inode& n) { return store_inode(h, n, n.disk); }

Status MountedFs::store_inode(Handle& h, Inode& n, DiskInode next) {
  uint64_t size = size_to_store(n, next);
  return store_inode_sized(h, n, next, size);
}

// A regular file's size grown in `next` is an explicit growth (truncate,
// fallocate): the zeros it adds are what the caller asked for, and the
// caller wrote back what lies below the old size first
// (write_back_below_size). Otherwise the record keeps what is stored,
// and a shrink lowers it.
uint64_t MountedFs::size_to_store(const Inode& n, const DiskInode& next) {
  if (!n.is_reg() || next.size > n.disk.size) return next.size;
  return std::min(next.size, n.stored_size);
}

Status MountedFs::store_inode_sized(Handle& h, Inode& n, DiskInode next, uint64_t size) {
  if (n.map && !(next.flags & kInodeInlineData)) n.map->store_root(next);
  DiskInode record = next;
  record.size = size;
  SFS_TRY(itable_->write(h, n.ino, record));
  n.disk = next;
  n.stored_size = size;
  // A stored size behind disk.size keeps the inode cached (trim_inode_cache):
  // reloaded from its record, it would lose the size of its dirty pages.
  n.attrs_dirty = size != next.size;
  return Status::Ok();
}

uint64_t MountedFs::written_size(const Inode& n, uint64_t written_end) {
  if (!n.is_reg()) return n.disk.size;
  return std::max(n.stored_size, std::min(n.disk.size, written_end));
}

Attr MountedFs::to_attr(const Inode& n) const {
  Attr a;
  a.ino = n.ino;
  a.mode = n.disk.mode;
  a.nlink = n.disk.nlink;
  a.uid = n.disk.uid;
  a.gid = n.disk.gid;
  a.size = n.disk.size;
  a.blocks512 = n.disk.blocks * (kBlockSize / 512);
  a.rdev = (S_ISCHR(n.disk.mode) || S_ISBLK(n.disk.mode)) ? n.disk.rdev : 0;
  a.atime = n.disk.atime;
  a.mtime = n.disk.mtime;
  a.ctime = n.disk.ctime;
  a.btime = n.disk.btime;
  a.generation = n.disk.generation;
  return a;
}

NodeAllocator MountedFs::node_allocator(uint64_t goal) {
  NodeAllocator na;
  na.alloc = [this, goal](Handle& h) -> Result<uint64_t> {
    auto r = alloc_->alloc_blocks(h, goal, 1);
    if (!r.ok()) return Error{r.error()};
    return r->start;
  };
  na.free = [this](Handle& h, uint64_t b) -> Status {
    h.revoke(b);
    cache_->forget(b);
    return alloc_->free_blocks(h, {b, 1});
  };
  return na;
}

Result<InodeRef> MountedFs::new_inode(Handle& h, uint32_t mode, uint32_t uid, uint32_t gid,
                                      uint64_t rdev, uint64_t parent) {
  auto ino = alloc_->alloc_inode(h);
  if (!ino.ok()) return Error{ino.error()};
  auto old = itable_->read(*ino);
  if (!old.ok()) return Error{old.error()};
  auto n = std::make_shared<Inode>(*ino);
  DiskInode& d = n->disk;
  d.mode = mode;
  d.uid = uid;
  d.gid = gid;
  d.nlink = S_ISDIR(mode) ? 2 : 1;
  if (S_ISDIR(mode)) d.set_parent(parent);
  else d.rdev = rdev;
  d.generation = old->generation + 1;
  d.atime = d.mtime = d.ctime = d.btime = now();
  n->map = std::make_unique<ExtentMap>(*ino);
  if (S_ISDIR(mode)) n->dir = std::make_unique<Directory>(*ino);
  {
    std::lock_guard lk(n->mu);
    SFS_TRY(store_inode(h, *n));
  }
  std::lock_guard lk(icache_mu_);
  icache_[*ino] = n;  // replaces a stale object of a freed earlier inode
  return n;
}

Status MountedFs::truncate_blocks(Inode& n, uint64_t from_block) {
  for (;;) {
    Handle h = journal_->start();
    std::lock_guard lk(n.mu);
    SFS_TRY(load_map(n));
    const auto& ex = n.map->extents();
    auto it = ex.upper_bound(uint32_t(std::min<uint64_t>(from_block, UINT32_MAX)));
    if (it != ex.begin()) {
      auto prev = std::prev(it);
      if (uint64_t(prev->second.logical) + prev->second.len > from_block) it = prev;
    }
    if (it == ex.end()) return Status::Ok();
    SFS_TRY(pin_inode(h, n));
    // Unmap up to the end of the k-th extent from here.
    auto last = it;
    for (size_t k = 1; k < kExtentsPerTruncateHandle && std::next(last) != ex.end(); k++) last++;
    uint64_t start = std::max<uint64_t>(from_block, it->second.logical);
    uint64_t end = uint64_t(last->second.logical) + last->second.len;
    std::vector<PhysRange> freed;
    SFS_TRY(n.map->unmap(h, *cache_, node_allocator(0), uint32_t(start), end - start, &freed));
    for (const PhysRange& r : freed) {
      if (n.is_dir()) {
        // Directory blocks are journalled metadata: revoke them.
        for (uint64_t b = r.start; b < r.start + r.count; b++) {
          h.revoke(b);
          cache_->forget(b);
        }
      }
      SFS_TRY(alloc_->free_blocks(h, r));
      n.disk.blocks -= std::min(n.disk.blocks, r.count);
    }
    SFS_TRY(store_inode(h, n));
  }
}

Status MountedFs::evict_inode(const InodeRef& n) {
  std::unique_lock op(n->op);
  {
    std::lock_guard lk(n->mu);
    if (n->freed) return Status::Ok();
  }
  pages_->truncate_inode_pages(n->ino, 0);
  SFS_TRY(truncate_blocks(*n, 0));
  Handle h = journal_->start();
  std::lock_guard lk(n->mu);
  // Pinned before the first block is freed: the record's store below then
  // fails only with the journal, and n keeps what is stored until then.
  SFS_TRY(pin_inode(h, *n));
  DiskInode unlinked = n->disk;
  SFS_TRY(free_xattrs(h, xattr_space(), n->ino, unlinked));
  for (uint64_t b : n->map ? n->map->node_blocks() : std::vector<uint64_t>{}) {
    h.revoke(b);
    cache_->forget(b);
    SFS_TRY(alloc_->free_blocks(h, {b, 1}));
  }
  DiskInode cleared;
  cleared.generation = n->disk.generation;  // the next user of this slot bumps it
  SFS_TRY(itable_->write(h, n->ino, cleared));
  SFS_TRY(alloc_->free_inode(h, n->ino));
  n->disk = cleared;
  n->map.reset();
  n->dir.reset();
  n->xattrs.reset();
  n->freed = true;
  std::lock_guard ilk(icache_mu_);
  if (auto it = icache_.find(n->ino); it != icache_.end() && it->second == n) icache_.erase(it);
  return Status::Ok();
}

void MountedFs::maybe_evict(const InodeRef& n) {
  {
    std::lock_guard lk(n->mu);
    if (n->freed || n->disk.nlink != 0 || n->lookups != 0) return;
  }
  Status s = evict_inode(n);
  if (!s.ok())
    SFS_LOG("inode %llu: freeing failed: %s", (unsigned long long)n->ino, std::strerror(s.error()));
}

size_t MountedFs::trim_inode_cache(size_t low) {
  std::vector<InodeRef> dropped;  // destroyed after the lock is released
  std::lock_guard lk(icache_mu_);
  if (icache_.size() <= low) return 0;
  for (auto it = icache_.begin(); it != icache_.end();) {
    const InodeRef& n = it->second;
    // try_lock: icache_mu_ is otherwise a leaf; a busy inode is in use anyway.
    std::unique_lock ml(n->mu, std::try_to_lock);
    // use_count() == 1 under icache_mu_: no other thread holds this object
    // or can get it before we let go, so no second object for the same
    // inode can ever be live.
    // lookups == 0: the kernel's count would be lost with the object.
    // nlink != 0: unlinked inodes are freed by maybe_evict or at unmount.
    if (ml.owns_lock() && n.use_count() == 1 && n->lookups == 0 && n->disk.nlink != 0 && !n->attrs_dirty &&
        n->write_errors.seq == 0 && !n->freed) {
      ml.unlock();
      dropped.push_back(std::move(it->second));
      it = icache_.erase(it);
    } else {
      ++it;
    }
  }
  return dropped.size();
}

void MountedFs::forget(uint64_t ino, uint64_t count) {
  InodeRef n;
  {
    std::lock_guard lk(icache_mu_);
    auto it = icache_.find(ino);
    if (it == icache_.end()) return;
    n = it->second;
  }
  {
    std::lock_guard lk(n->mu);
    n->lookups -= std::min(n->lookups, count);
  }
  maybe_evict(n);
}

}  // namespace stablefs
