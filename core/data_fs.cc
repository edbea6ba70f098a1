// File data: read, write, truncate, fallocate, SEEK_DATA/SEEK_HOLE,
// copy_file_range, flush and fsync.
//
// A write copies bytes into cache pages under the stable-page protocol
// (core/page_cache.h); a read is served from the cache or read from the
// backing store and verified against the block's recorded checksum.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "core/base/checksum.h"
#include "core/base/log.h"
#include "core/mounted_fs.h"

namespace stablefs {
namespace {

constexpr uint64_t kMaxFileSize = (uint64_t(UINT32_MAX) + 1) * kBlockSize;  // 16 TiB
// Blocks kept back from data writes for metadata (tree nodes, directory
// blocks), so a full filesystem can still record mappings and deletions.
constexpr uint64_t kMetadataReserveBlocks = 64;

}  // namespace

// Where page idx of n lives and the checksum its block must match; phys 0
// for a hole or an unwritten extent (the page reads as zeros). n.mu held,
// map loaded.
Result<MountedFs::StoredBlock> MountedFs::stored_block(Inode& n, uint64_t idx) {
  StoredBlock b;
  auto e = n.map->find(uint32_t(idx));
  if (!e || e->unwritten) return b;
  b.phys = e->physical + (idx - e->logical);
  auto c = csums_->get(b.phys);
  if (!c.ok()) return Error{c.error()};
  b.expected = *c;
  // Looked up before the device is read: once none is found, the block
  // itself is current (an image is dropped only after it reached home).
  b.image = journal_->data_image(b.phys);
  return b;
}

// Whether `data`, read from b for page idx of n, matches its checksum; a
// mismatch is an integrity error, counted and logged.
bool MountedFs::verify_read(const Inode& n, uint64_t idx, const StoredBlock& b,
                            const uint8_t* data) {
  uint64_t actual = block_checksum(b.phys, data, kPageSize);
  if (actual == b.expected) return true;
  c_->integrity_errors_read++;
  SFS_LOG("integrity error: inode %llu offset %llu block %llu: expected checksum %016llx, "
          "actual %016llx",
          (unsigned long long)n.ino, (unsigned long long)(idx * kPageSize),
          (unsigned long long)b.phys, (unsigned long long)b.expected, (unsigned long long)actual);
  return false;
}

// Fills a locked, !Uptodate page from the backing store (or with zeros for
// a hole), verifying the block's checksum. Takes n.mu for the mapping.
Status MountedFs::read_page(Inode& n, Page& page) {
  StoredBlock b;
  {
    std::lock_guard lk(n.mu);
    SFS_TRY(load_map(n));
    auto r = stored_block(n, page.index());
    if (!r.ok()) return Error{r.error()};
    b = *r;
  }
  if (b.phys == 0) {
    std::memset(page.data(), 0, kPageSize);
    return Status::Ok();
  }
  Status s;
  // A journaled rewrite not yet checkpointed is newer than the block.
  if (b.image)
    std::memcpy(page.data(), b.image->bytes.data(), kPageSize);
  else
    s = dev_->read(b.phys, page.data(), kPageSize);
  if (!s.ok()) {
    SFS_LOG("read error: inode %llu offset %llu block %llu: %s", (unsigned long long)n.ino,
            (unsigned long long)(page.index() * kPageSize), (unsigned long long)b.phys,
            std::strerror(s.error()));
    return err(EIO);
  }
  if (!verify_read(n, page.index(), b, page.data())) {
    std::memset(page.data(), 0, kPageSize);  // never hand out corrupt bytes
    return err(EIO);
  }
  return Status::Ok();
}

// Reads pages [first, first+count) that are not cached with as few device
// requests as possible, verifying each block. Pages are grabbed in
// ascending order; only the first may wait for a free frame (a thread that
// holds a page lock must not wait for memory), so the run may come back
// shorter than asked. Returns the pages, locked and Uptodate. Pages from
// `needed` on are a readahead: a bad block there ends the run quietly (it
// is reported when someone reads it).
Result<std::vector<PageRef>> MountedFs::read_pages(Inode& n, uint64_t first, size_t count,
                                                   size_t needed) {
  std::vector<PageRef> pages;
  for (size_t i = 0; i < count; i++) {
    auto pr = pages_->grab_cache_page(n.ino, first + i,
                                      i == 0 ? PageCache::Alloc::kWait : PageCache::Alloc::kNoWait);
    if (!pr.ok()) {
      if (i == 0) return Error{pr.error()};
      break;
    }
    if (i > 0 && (*pr)->uptodate()) {  // cached: the run of misses ends here
      pages_->unlock_page(*pr);
      break;
    }
    pages.push_back(std::move(*pr));
  }
  if (pages[0]->uptodate()) {  // someone else read it meanwhile
    for (size_t i = 1; i < pages.size(); i++) pages_->unlock_page(pages[i]);
    pages.resize(1);
    return pages;
  }

  std::vector<StoredBlock> want(pages.size());
  Status s;
  {
    std::lock_guard lk(n.mu);
    s = load_map(n);
    for (size_t i = 0; s.ok() && i < pages.size(); i++) {
      auto r = stored_block(n, pages[i]->index());
      if (!r.ok()) s = Error{r.error()};
      else want[i] = *r;
    }
  }
  std::vector<IoRequest> reqs;
  reqs.reserve(pages.size());
  for (size_t i = 0; s.ok() && i < pages.size(); i++) {
    if (want[i].phys == 0) {
      std::memset(pages[i]->data(), 0, kPageSize);
      continue;
    }
    if (want[i].image) {
      std::memcpy(pages[i]->data(), want[i].image->bytes.data(), kPageSize);
      continue;
    }
    if (reqs.empty() || i == 0 || want[i - 1].phys == 0 || want[i - 1].image ||
        want[i].phys != want[i - 1].phys + 1 ||
        reqs.back().iov_count == IoRequest::kMaxSegments) {
      reqs.emplace_back();
      reqs.back().op = IoOp::kRead;
      reqs.back().blocknr = want[i].phys;
    }
    reqs.back().add(pages[i]->data(), kPageSize);
  }
  if (s.ok() && !reqs.empty()) {
    std::vector<IoRequest*> ptrs;
    for (auto& r : reqs) ptrs.push_back(&r);
    s = dev_->submit_and_wait(ptrs);
    if (!s.ok())
      SFS_LOG("read error: inode %llu offset %llu: %s", (unsigned long long)n.ino,
              (unsigned long long)(first * kPageSize), std::strerror(s.error()));
  }
  // Verify every block; the first bad one ends the run (and is an error
  // only if it is the first page: the caller gets a short read before it).
  size_t good = 0;
  for (; s.ok() && good < pages.size(); good++) {
    const StoredBlock& w = want[good];
    if (w.phys == 0) continue;
    if (good >= needed) {
      // A neighbour nobody asked for: a bad one ends the run quietly and
      // is reported when someone reads it.
      if (block_checksum(w.phys, pages[good]->data(), kPageSize) != w.expected) break;
    } else if (!verify_read(n, pages[good]->index(), w, pages[good]->data())) {
      break;
    }
  }
  if (!s.ok()) good = 0;
  for (size_t i = good; i < pages.size(); i++) {
    // Never hand out unverified bytes. The page stays !Uptodate, so the
    // next reader or writer reads (and verifies) it again.
    std::memset(pages[i]->data(), 0, kPageSize);
    pages_->unlock_page(pages[i]);
    pages[i].reset();
  }
  pages.resize(good);
  if (good == 0) return err(s.ok() ? EIO : (s.error() == EIO ? EIO : s.error()));
  for (auto& p : pages) pages_->set_page_uptodate(p);
  c_->bytes_read += good * kPageSize;
  return pages;
}

// How many pages a read that misses at idx fetches: the pages it asks for
// and, for a small read, the rest of its aligned 64 KiB cluster inside the
// file (the kernel sends random 4 KiB reads one page at a time). The extra
// pages are read in the same request, verified like any other and kept in
// the cache; a later read of a neighbour then costs no I/O, which is what
// an image read through the host's page cache (fuse2fs, ext4 on a loop
// device) gets from the host's readahead.
size_t MountedFs::read_run_pages(uint64_t idx, uint64_t last, uint64_t isize) {
  constexpr uint64_t kClusterPages = (64 << 10) / kPageSize;
  constexpr uint64_t kMaxRunPages = 256;
  uint64_t eof_pages = (isize + kPageSize - 1) / kPageSize;
  uint64_t want = last - idx + 1;
  uint64_t cluster_end = std::min(eof_pages, (idx / kClusterPages + 1) * kClusterPages);
  if (cluster_end > idx + want) want = cluster_end - idx;
  return size_t(std::min(want, kMaxRunPages));
}

Result<size_t> MountedFs::read_locked(Inode& n, uint64_t off, size_t size, char* out) {
  uint64_t isize;
  {
    std::lock_guard lk(n.mu);
    isize = n.disk.size;
  }
  if (off >= isize) return size_t(0);
  size = size_t(std::min<uint64_t>(size, isize - off));
  size_t done = 0;
  while (done < size) {
    uint64_t pos = off + done;
    uint64_t idx = pos / kPageSize;
    uint64_t last = (off + size - 1) / kPageSize;
    std::vector<PageRef> run;
    PageRef cached = pages_->find_get_page(n.ino, idx);
    if (cached) {
      pages_->lock_page(cached);
      if (cached->attached() && cached->uptodate()) run.push_back(std::move(cached));
      else pages_->unlock_page(cached);
    }
    if (run.empty()) {
      // All or nothing: a FUSE READ reply shorter than asked means end of
      // file to the kernel, which would then shrink the file and hand the
      // application a truncated copy. The kernel retries with smaller
      // reads, so only reads that touch the bad block fail.
      size_t needed = size_t(std::min<uint64_t>(last - idx + 1, 256));
      size_t count = read_run_pages(idx, last, isize);
      auto r = read_pages(n, idx, count, needed);
      // A device error may lie in the readahead part: the asked-for pages
      // alone must still be readable.
      if (!r.ok() && count > needed) r = read_pages(n, idx, needed, needed);
      if (!r.ok()) return Error{r.error()};
      run = std::move(*r);
    }
    for (auto& p : run) {
      uint64_t ppos = off + done;
      size_t in_page = ppos % kPageSize;
      size_t n_bytes = std::min(kPageSize - in_page, size - done);
      if (done < size) {
        std::memcpy(out + done, p->data() + in_page, n_bytes);
        done += n_bytes;
      }
      pages_->unlock_page(p);
    }
  }
  return done;
}

Result<size_t> MountedFs::read(uint64_t ino, uint64_t off, size_t size, char* out) {
  auto nr = get_inode(ino);
  if (!nr.ok()) return Error{nr.error()};
  Inode& n = **nr;
  std::shared_lock op(n.op);
  {
    std::lock_guard lk(n.mu);
    if (n.is_dir()) return err(EISDIR);
  }
  auto r = read_locked(n, off, size, out);
  if (r.ok()) touch_atime(n);
  return r;
}

// relatime, as Linux mounts by default: atime moves when it is older than
// mtime or ctime, or more than a day old. FUSE leaves atime to the daemon.
void MountedFs::touch_atime(Inode& n) {
  if (read_only_ || opts_.atime == AtimeMode::kNoatime) return;
  Timespec t = now();
  std::lock_guard lk(n.mu);
  if (n.disk.flags & kInodeNoatime) return;  // chattr +A
  if (opts_.nodiratime && n.is_dir()) return;
  auto before = [](const Timespec& a, const Timespec& b) {
    return a.sec < b.sec || (a.sec == b.sec && a.nsec <= b.nsec);
  };
  const Timespec& a = n.disk.atime;
  if (opts_.atime == AtimeMode::kRelatime && !before(a, n.disk.mtime) &&
      !before(a, n.disk.ctime) && t.sec - a.sec < 24 * 3600)
    return;
  n.disk.atime = t;
  if (!n.attrs_dirty) {
    n.attrs_dirty = true;
    std::lock_guard dl(dirty_mu_);
    dirty_inodes_.insert(n.ino);
  }
}

// Gets the page at idx locked, stable (no writeback in progress on the
// bytes the caller will change) and Uptodate when `fill` is set.
Result<PageRef> MountedFs::grab_stable_page(Inode& n, uint64_t idx, bool fill) {
  auto pr = pages_->grab_cache_page(n.ino, idx);
  if (!pr.ok()) return Error{pr.error()};
  PageRef p = std::move(*pr);
  if (p->writeback()) {
    switch (opts_.stable_pages) {
      case StablePages::kWait:
        (void)pages_->wait_on_page_writeback(p);
        break;
      case StablePages::kShadow: {
        // Take a copy for the new bytes; the I/O keeps the old frame.
        auto s = pages_->shadow_page(p);
        if (s.ok()) {
          pages_->unlock_page(p);
          p = std::move(*s);
        } else {
          c_->shadow_pool_fallbacks++;
          (void)pages_->wait_on_page_writeback(p);
        }
        break;
      }
      case StablePages::kBounce:  // writeback writes a private copy
      case StablePages::kOff:     // no protection: the reproducer's case
        break;
    }
  }
  if (fill && !p->uptodate()) {
    Status s = read_page(n, *p);
    if (!s.ok()) {
      pages_->unlock_page(p);
      return Error{s.error()};
    }
    pages_->set_page_uptodate(p);
  }
  return p;
}

Result<size_t> MountedFs::write(uint64_t ino, uint64_t off, const char* data, size_t size) {
  if (read_only_) return err(EROFS);
  SFS_TRY(check_inode_flags(ino, FlagCheck::kWrite, off));
  auto nr = get_inode(ino);
  if (!nr.ok()) return Error{nr.error()};
  Inode& n = **nr;
  std::shared_lock op(n.op);
  uint64_t isize;
  {
    std::lock_guard lk(n.mu);
    if (n.is_dir()) return err(EISDIR);
    if (!n.is_reg() && !n.is_lnk()) return err(EINVAL);
    isize = n.disk.size;
  }
  if (off >= kMaxFileSize) return err(EFBIG);
  size = size_t(std::min<uint64_t>(size, kMaxFileSize - off));
  // Every dirty page needs a fresh block at writeback (redirect-on-write,
  // even for an overwrite), so refuse up front, as delayed allocation in
  // ext4 does, rather than fail the writeback later. Blocks waiting for
  // their freeing commit count as free: writeback commits to get them.
  uint64_t pages_touched = (off + size + kPageSize - 1) / kPageSize - off / kPageSize;
  uint64_t available = alloc_->free_block_count() + alloc_->pending_free_blocks();
  uint64_t committed = pages_->dirty_count() + pages_->writeback_count();
  if (available < committed + pages_touched + kMetadataReserveBlocks) return err(ENOSPC);
  size_t done = 0;
  while (done < size) {
    uint64_t pos = off + done;
    uint64_t idx = pos / kPageSize;
    size_t in_page = pos % kPageSize;
    size_t n_bytes = std::min(kPageSize - in_page, size - done);
    // A partial page inside the file needs its old bytes first.
    bool partial = n_bytes != kPageSize;
    bool need_fill = partial && idx * kPageSize < isize;
    auto pr = grab_stable_page(n, idx, need_fill);
    if (!pr.ok()) {
      if (done) break;
      return Error{pr.error()};
    }
    PageRef& p = *pr;
    if (!p->uptodate()) {
      std::memset(p->data(), 0, kPageSize);  // beyond EOF or a hole
      pages_->set_page_uptodate(p);
    }
    std::memcpy(p->data() + in_page, data + done, n_bytes);
    (void)pages_->set_page_dirty(p);
    done += n_bytes;
    {
      // The size moves before the page is unlocked (as the kernel's
      // write_end does): writeback, which takes the page through its lock,
      // then maps it under a size that covers it, or the page is dirty
      // again when the size has moved.
      std::lock_guard lk(n.mu);
      n.disk.size = std::max(n.disk.size, off + done);
    }
    pages_->unlock_page(p);
  }
  {
    std::lock_guard lk(n.mu);
    n.disk.mtime = n.disk.ctime = now();
    if (!n.attrs_dirty) {
      n.attrs_dirty = true;
      std::lock_guard dl(dirty_mu_);
      dirty_inodes_.insert(n.ino);
    }
  }
  c_->bytes_written += done;
  if (opts_.writeback_delay_ms == 0 || pages_->dirty_count() * 2 > pages_->capacity_pages())
    kick_flusher();
  op.unlock();
  if (done > 0 && has_sync_flag(n)) SFS_TRY(fsync(ino, false));
  return done;
}

// Zeroes [off, off+len) inside one page, through the cache, so the change
// is written back like any other write (used at truncate and punch edges).
Status MountedFs::zero_range_in_cache(Inode& n, uint64_t off, uint64_t len) {
  if (len == 0) return Status::Ok();
  uint64_t idx = off / kPageSize;
  auto pr = grab_stable_page(n, idx, true);
  if (!pr.ok()) return Error{pr.error()};
  std::memset((*pr)->data() + off % kPageSize, 0, len);
  (void)pages_->set_page_dirty(*pr);
  pages_->unlock_page(*pr);
  return Status::Ok();
}

Status MountedFs::truncate_locked(const InodeRef& nr, uint64_t size) {
  Inode& n = *nr;
  uint64_t old;
  {
    std::lock_guard lk(n.mu);
    old = n.disk.size;
  }
  if (size < old) {
    // The size is stored first, as ext4 does: a truncate that fails there
    // has dropped no page and zeroed no byte. One that fails later (a read
    // error on the new last page) reports it with the new size stored.
    SFS_TRY(write_back_under(n, size));
    SFS_TRY(store_size(n, size, /*whole=*/true));
    uint64_t first_gone = (size + kPageSize - 1) / kPageSize;
    pages_->truncate_inode_pages(n.ino, first_gone);
    if (size % kPageSize) SFS_TRY(zero_range_in_cache(n, size, kPageSize - size % kPageSize));
    return truncate_blocks(n, first_gone);
  }
  if (size > old && old % kPageSize) {
    // Bytes past the old EOF in its last page (written through mmap, say)
    // must read back as zeros now that they are inside the file.
    SFS_TRY(zero_range_in_cache(n, old, kPageSize - old % kPageSize));
  }
  if (size > old) SFS_TRY(write_back_below_size(n));
  return store_size(n, size);
}

Status MountedFs::write_back_below_size(Inode& n) {
  {
    std::lock_guard lk(n.mu);
    if (!n.is_reg() || n.stored_size >= n.disk.size) return Status::Ok();
  }
  SFS_TRY(writeback_inode(n, 0));
  pages_->wait_on_writeback_range(n.ino, 0, UINT64_MAX);
  return Status::Ok();
}

// Before a truncate down stores its size whole: the data under it that is
// not yet written is written first. A size stored short of the truncated
// size would stay short for good when what lies between is a hole, as
// nothing written there would ever move it (xfstests generic/098: write,
// append past a hole, truncate into the hole, remount). n.op held
// exclusively, so no write can dirty that range meanwhile.
Status MountedFs::write_back_under(Inode& n, uint64_t size) {
  uint64_t stored;
  {
    std::lock_guard lk(n.mu);
    if (!n.is_reg() || n.stored_size >= size) return Status::Ok();
    stored = n.stored_size;
  }
  const uint64_t first = stored / kPageSize, last = (size - 1) / kPageSize;
  bool dirty;
  {
    std::array<PageRef, 1> found;
    dirty = pages_->find_dirty_pages(n.ino, first, last, found) != 0;
  }
  if (dirty) SFS_TRY(writeback_inode(n, 0));
  pages_->wait_on_writeback_range(n.ino, first, last);
  return Status::Ok();
}

// Stores n's new size in a handle of its own; n.disk changes only once the
// store succeeded. whole: all data under `size` is written, so the record
// takes it as it is (not only as far as stored data goes).
Status MountedFs::store_size(Inode& n, uint64_t size, bool whole) {
  Handle h = journal_->start();
  std::lock_guard lk(n.mu);
  DiskInode next = n.disk;
  next.size = size;
  if (whole && n.is_reg()) return store_inode_sized(h, n, next, size);
  return store_inode(h, n, next);
}

uint64_t MountedFs::sample_write_errors(uint64_t ino) {
  auto nr = get_inode(ino);
  if (!nr.ok()) return 0;
  std::lock_guard lk((*nr)->mu);
  return (*nr)->write_errors.sample();
}

// The error a description at *cursor has not seen yet; without a cursor,
// the inode's own (for callers with no open file, such as the tests).
static Status unseen_write_error(Inode& n, uint64_t* cursor) {
  int e = n.write_errors.check(cursor ? cursor : &n.write_error_cursor);
  return e ? Status(err(e)) : Status::Ok();
}

Status MountedFs::flush(uint64_t ino, uint64_t* cursor) {
  auto nr = get_inode(ino);
  if (!nr.ok()) return Error{nr.error()};
  std::lock_guard lk((*nr)->mu);
  return unseen_write_error(**nr, cursor);
}

Status MountedFs::write_inode_if_dirty(Inode& n, bool data_written) {
  {
    std::lock_guard lk(n.mu);
    if (!n.attrs_dirty || n.freed) return Status::Ok();
  }
  Handle h = journal_->start();
  std::lock_guard lk(n.mu);
  if (!n.attrs_dirty || n.freed) return Status::Ok();
  uint64_t size = size_to_store(n, n.disk);
  if (data_written && n.is_reg()) {
    // fsync wrote every page back: the whole size is stored, unless a
    // page was dirtied since (its writeback will move the size).
    std::array<PageRef, 1> dirty;
    if (pages_->find_dirty_pages(n.ino, 0, UINT64_MAX, dirty) == 0) size = n.disk.size;
  }
  return store_inode_sized(h, n, n.disk, size);
}

Status MountedFs::fsync(uint64_t ino, bool datasync, uint64_t* cursor) {
  auto nr = get_inode(ino);
  if (!nr.ok()) return Error{nr.error()};
  Inode& n = **nr;
  Status s = writeback_inode(n, 0);
  // Pages another thread was writing back when we looked must be done
  // (and their mappings journalled) before the commit.
  pages_->wait_on_writeback_range(n.ino, 0, UINT64_MAX);
  if (s.ok()) s = write_inode_if_dirty(n, true);
  if (s.ok()) s = journal_->commit();
  std::lock_guard lk(n.mu);
  // A writeback error (this fsync's own, or an earlier one of another
  // writer) is what the caller must hear about; each description once.
  Status unseen = unseen_write_error(n, cursor);
  if (!unseen.ok()) return unseen;
  // This fsync's own failure was recorded above and has just been seen
  // through another cursor: still a failure for this caller.
  return s;
}

Status MountedFs::fallocate(uint64_t ino, int mode, uint64_t off, uint64_t len) {
  if (read_only_) return err(EROFS);
  const int supported = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
  if (mode & ~supported) return err(EOPNOTSUPP);
  if ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE)) return err(EOPNOTSUPP);
  if (len == 0) return err(EINVAL);
  if (off + len > kMaxFileSize || off + len < off) return err(EFBIG);
  // Append-only allows only reserving space (KEEP_SIZE), as vfs_fallocate.
  SFS_TRY(check_inode_flags(ino, mode == FALLOC_FL_KEEP_SIZE ? FlagCheck::kAppend : FlagCheck::kWrite));
  auto nr = get_inode(ino);
  if (!nr.ok()) return Error{nr.error()};
  Inode& n = **nr;
  std::unique_lock op(n.op);
  {
    std::lock_guard lk(n.mu);
    if (n.is_dir()) return err(EISDIR);
    if (!n.is_reg()) return err(ENODEV);
  }
  uint64_t end = off + len;
  if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
    uint64_t isize;
    {
      std::lock_guard lk(n.mu);
      isize = n.disk.size;
    }
    // Partial pages at the edges are zeroed in place; whole pages go.
    uint64_t zend = std::min(end, std::max(isize, off));
    uint64_t first_full = (off + kPageSize - 1) / kPageSize;
    uint64_t last_full_end = zend / kPageSize;  // exclusive
    if (off < zend) {
      if (first_full > last_full_end) {
        SFS_TRY(zero_range_in_cache(n, off, zend - off));
      } else {
        if (off % kPageSize)
          SFS_TRY(zero_range_in_cache(n, off, first_full * kPageSize - off));
        if (zend % kPageSize && last_full_end * kPageSize >= first_full * kPageSize)
          SFS_TRY(zero_range_in_cache(n, last_full_end * kPageSize, zend % kPageSize));
      }
    }
    if (last_full_end > first_full) {
      pages_->truncate_inode_pages_range(n.ino, first_full, last_full_end - 1);
      SFS_TRY(unmap_range(n, first_full, last_full_end - first_full));
    }
    if (mode & FALLOC_FL_PUNCH_HOLE) {
      Handle h = journal_->start();
      std::lock_guard lk(n.mu);
      DiskInode next = n.disk;
      next.mtime = next.ctime = now();
      return store_inode(h, n, next);
    }
  }
  if (!(mode & FALLOC_FL_KEEP_SIZE)) SFS_TRY(write_back_below_size(n));
  // Allocate (as unwritten extents) every hole in the range.
  SFS_TRY(preallocate(n, off / kPageSize, (end + kPageSize - 1) / kPageSize));
  Handle h = journal_->start();
  std::lock_guard lk(n.mu);
  DiskInode next = n.disk;
  if (!(mode & FALLOC_FL_KEEP_SIZE) && end > next.size) next.size = end;
  next.ctime = now();
  if (mode & FALLOC_FL_ZERO_RANGE) next.mtime = next.ctime;
  return store_inode(h, n, next);
}

Status MountedFs::unmap_range(Inode& n, uint64_t first, uint64_t count) {
  Handle h = journal_->start();
  std::lock_guard lk(n.mu);
  SFS_TRY(load_map(n));
  SFS_TRY(pin_inode(h, n));
  std::vector<PhysRange> freed;
  SFS_TRY(n.map->unmap(h, *cache_, node_allocator(0), uint32_t(first), count, &freed));
  for (const PhysRange& r : freed) {
    SFS_TRY(alloc_->free_blocks(h, r));
    n.disk.blocks -= std::min(n.disk.blocks, r.count);
  }
  return store_inode(h, n);
}

Status MountedFs::preallocate(Inode& n, uint64_t first, uint64_t end) {
  constexpr uint64_t kBlocksPerHandle = 4096;
  uint64_t pos = first;
  bool committed_for_space = false;
  while (pos < end) {
    bool commit_then_retry = false;
    {
      Handle h = journal_->start();
      std::lock_guard lk(n.mu);
      SFS_TRY(load_map(n));
      SFS_TRY(pin_inode(h, n));
      uint64_t budget = kBlocksPerHandle;
      while (pos < end && budget > 0) {
        auto e = n.map->find(uint32_t(pos));
        if (e) {
          pos = uint64_t(e->logical) + e->len;
          continue;
        }
        auto nx = n.map->next(uint32_t(pos));
        uint64_t hole_end = nx ? std::min<uint64_t>(end, nx->logical) : end;
        uint64_t want = std::min(hole_end - pos, budget);
        auto r = alloc_->alloc_blocks(h, 0, want);
        if (!r.ok()) {
          // What this handle mapped so far is allocated in the bitmap: the
          // inode must say so too, or those blocks belong to nobody.
          (void)store_inode(h, n);
          commit_then_retry = r.error() == ENOSPC && !committed_for_space &&
                              alloc_->pending_free_blocks() > 0;
          if (!commit_then_retry) return Error{r.error()};
          break;
        }
        std::vector<PhysRange> replaced;
        SFS_TRY(n.map->map(h, *cache_, node_allocator(r->start), uint32_t(pos),
                           uint32_t(r->count), r->start, true, &replaced));
        n.disk.blocks += r->count;
        pos += r->count;
        budget -= r->count;
      }
      if (!commit_then_retry) SFS_TRY(store_inode(h, n));
    }
    if (commit_then_retry) {
      // Blocks freed by a transaction that has not committed yet become
      // allocatable when it does (writeback and ext4 retry the same way;
      // xfstests generic/214 fallocates right after 213 removed a huge
      // file). Once: no handle is held here.
      committed_for_space = true;
      SFS_TRY(journal_->commit());
    }
  }
  return Status::Ok();
}

Result<uint64_t> MountedFs::seek_data_hole(uint64_t ino, uint64_t off, int whence) {
  auto nr = get_inode(ino);
  if (!nr.ok()) return Error{nr.error()};
  Inode& n = **nr;
  // Dirty pages are data too: write them back so the map tells all.
  SFS_TRY(writeback_inode(n, 0));
  pages_->wait_on_writeback_range(n.ino, 0, UINT64_MAX);
  std::shared_lock op(n.op);
  std::lock_guard lk(n.mu);
  uint64_t isize = n.disk.size;
  if (off >= isize) return err(ENXIO);
  SFS_TRY(load_map(n));
  uint64_t blk = off / kBlockSize;
  if (whence == SEEK_DATA) {
    for (auto e = n.map->next(uint32_t(blk)); e; e = n.map->next(e->logical + e->len)) {
      if (e->unwritten) continue;  // preallocated blocks read as zeros: a hole
      uint64_t start = std::max<uint64_t>(off, uint64_t(e->logical) * kBlockSize);
      if (start >= isize) break;
      return start;
    }
    return err(ENXIO);
  }
  // SEEK_HOLE: the end of the run of written extents containing off.
  uint64_t pos = blk;
  for (;;) {
    auto e = n.map->find(uint32_t(pos));
    if (!e || e->unwritten) break;
    pos = uint64_t(e->logical) + e->len;
    if (pos * kBlockSize >= isize) break;
  }
  return std::min(isize, std::max(off, pos * kBlockSize));
}

Result<size_t> MountedFs::copy_file_range(uint64_t ino_in, uint64_t off_in, uint64_t ino_out,
                                          uint64_t off_out, size_t len) {
  if (ino_in == ino_out && off_in < off_out + len && off_out < off_in + len) return err(EINVAL);
  std::vector<char> buf(std::min<size_t>(len, 1 << 20));
  size_t done = 0;
  while (done < len) {
    size_t chunk = std::min(buf.size(), len - done);
    // An error is reported even after some chunks were copied: a short
    // count would let the caller take a failure for the end of the input.
    auto r = read(ino_in, off_in + done, chunk, buf.data());
    if (!r.ok()) return Error{r.error()};
    if (*r == 0) break;
    auto w = write(ino_out, off_out + done, buf.data(), *r);
    if (!w.ok()) return Error{w.error()};
    done += *w;
    if (*w < *r) break;
  }
  return done;
}

}  // namespace stablefs
