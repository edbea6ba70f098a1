// Writeback: dirty cache pages to the backing store, redirect-on-write.
//
// For each batch of dirty pages of one inode:
//   1. lock, clear Dirty, set Writeback, unlock (the stable-page handoff);
//      then a short run of pages over blocks that already hold data is
//      journaled whole (journal_rewrites) and leaves the batch; the rest:
//   2. reserve new blocks in memory (never overwrite a block that a
//      committed checksum refers to);
//   3. checksum each page (seeded with its new block number) and submit the
//      writes as few multi-segment requests;
//   4. once they completed, in ONE journal handle: commit the reservation
//      to the bitmap, map the pages to their new blocks, record the
//      checksums, free the old blocks (reusable only after this
//      transaction commits); if that fails part way, the same handle takes
//      it back;
//   5. end Writeback, which wakes writers waiting on the pages.
// Ordered data follows: the mapping only reaches a transaction after the
// data write completed, and the commit's flush (or, for an async commit,
// its data tags checked at replay) covers the device's volatile cache.
#include <algorithm>
#include <array>
#include <cstring>
#include <unordered_set>

#include "core/base/checksum.h"
#include "core/base/log.h"
#include "core/mounted_fs.h"

namespace stablefs {
namespace {
constexpr size_t kBatchPages = kWritebackBatchPages;

// Journaled pages per handle: each also dirties a checksum table block, so
// this bounds what one handle adds to a transaction (the smallest log is
// 1024 blocks); beyond it pages take the batch path.
constexpr size_t kMaxJournaledPerHandle = 64;

// The end of the last page of a batch, in bytes.
uint64_t pages_end(const std::vector<PendingPage>& batch) {
  uint64_t end = 0;
  for (const PendingPage& pp : batch) end = std::max(end, (pp.page->index() + 1) * kPageSize);
  return end;
}

}  // namespace

Status MountedFs::writeback_inode(Inode& n, size_t max_pages) {
  std::array<PageRef, kBatchPages> found;
  auto lease = writeback_buffers_->acquire();
  WritebackBuffers& wb = *lease;
  uint64_t next = 0;
  size_t total = 0;
  Status first;
  for (;;) {
    size_t want = kBatchPages;
    if (max_pages) want = std::min(want, max_pages - total);
    if (want == 0) break;
    size_t nfound = pages_->find_dirty_pages(n.ino, next, UINT64_MAX, std::span(found.data(), want));
    if (nfound == 0) break;
    next = found[nfound - 1]->index() + 1;
    start_writeback(n, std::span(found.data(), nfound), wb);
    if (wb.batch.empty()) continue;
    total += wb.batch.size();
    Status s = write_batch(n, wb);
    if (!s.ok()) {
      SFS_LOG("writeback of inode %llu failed: %s", (unsigned long long)n.ino,
              std::strerror(s.error()));
      std::lock_guard lk(n.mu);
      n.write_errors.record(s.error() == ENOSPC ? ENOSPC : EIO);
      if (first.ok()) first = s;
    }
    end_writeback(wb.batch, s);
  }
  return first;
}

// 1. The handoff: Writeback is set while the page is locked. The pages of
// `found` that are still dirty become wb.batch; `found` is emptied.
void MountedFs::start_writeback(Inode& n, std::span<PageRef> found, WritebackBuffers& wb) {
  std::vector<PendingPage>& batch = wb.batch;
  batch.clear();
  for (PageRef& p : found) {
    pages_->lock_page(p);
    if (!p->attached() || !p->dirty()) {
      pages_->unlock_page(p);
      p.reset();
      continue;
    }
    // A page dirtied again while its previous write is in flight (only
    // possible with bounce/off) waits for that write: one I/O per page.
    (void)pages_->wait_on_page_writeback(p);
    // With shadow pages the previous write may be in flight from a
    // detached frame of the same index. Its mapping must land before
    // ours, or it would map older bytes over newer ones (found by the
    // spin model, core/page_cache.pml, check 4).
    pages_->wait_on_writeback_range(n.ino, p->index(), p->index());
    if (!pages_->test_clear_page_dirty(p)) {
      pages_->unlock_page(p);
      p.reset();
      continue;
    }
    if (!pages_->set_page_writeback(p).ok()) {
      (void)pages_->set_page_dirty(p);
      pages_->unlock_page(p);
      p.reset();
      continue;
    }
    PendingPage pp;
    pp.bytes = p->data();
    if (!wb.bounce.empty()) {
      // bounce: snapshot now, checksum and write the snapshot.
      std::memcpy(wb.bounce[batch.size()].data(), p->data(), kPageSize);
      pp.bytes = wb.bounce[batch.size()].data();
      c_->bounce_copies++;
    }
    pages_->unlock_page(p);
    pp.page = std::move(p);
    batch.push_back(std::move(pp));
  }
}

// Steps 1b-4 for the pages of wb.batch under writeback. On failure the
// blocks reserved for them are given back (and a partly recorded mapping
// taken back), so nothing claims the data is on disk.
Status MountedFs::write_batch(Inode& n, WritebackBuffers& wb) {
  // 1b. Short runs of rewritten pages go whole into the journal.
  if (journal_data_enabled()) {
    journal_rewrites(n, wb.batch, wb.rest);
    wb.batch.swap(wb.rest);
    if (wb.batch.empty()) return Status::Ok();
  }
  Status s = reserve_blocks(n, wb);
  if (s.ok()) s = write_pages(n, wb);
  if (!s.ok()) {
    for (const PhysRange& r : wb.reserved) alloc_->unreserve(r);
    return s;
  }
  return journal_mapping(n, wb);
}

// 2. Reserves a new block for each page of wb.batch (pp.phys), contiguous
// where the pages are and after the block of the page before the first.
// What was reserved is in wb.reserved, also on failure.
Status MountedFs::reserve_blocks(Inode& n, WritebackBuffers& wb) {
  std::vector<PendingPage>& batch = wb.batch;
  wb.reserved.clear();
  uint64_t goal = 0;
  {
    std::lock_guard lk(n.mu);
    SFS_TRY(load_map(n));
    if (batch[0].page->index() > 0)
      if (auto e = n.map->find(uint32_t(batch[0].page->index() - 1)))
        goal = e->physical + (batch[0].page->index() - 1 - e->logical) + 1;
  }
  for (size_t i = 0; i < batch.size();) {
    size_t run = 1;
    while (i + run < batch.size() && batch[i + run].page->index() == batch[i].page->index() + run)
      run++;
    auto r = alloc_->reserve_blocks(goal, run);
    if (!r.ok() && r.error() == ENOSPC && alloc_->pending_free_blocks() > 0) {
      // Blocks freed by the running transaction become allocatable when
      // it commits (as ext4 retries after a commit). No handle is held.
      if (Status c = journal_->commit(); c.ok()) r = alloc_->reserve_blocks(goal, run);
    }
    if (!r.ok()) return Error{r.error()};
    wb.reserved.push_back(*r);
    for (uint64_t k = 0; k < r->count; k++) batch[i + k].phys = r->start + k;
    goal = r->start + r->count;
    i += r->count;
  }
  return Status::Ok();
}

// 3. Checksums the exact bytes that go out and writes them, as few
// multi-segment requests, and waits (verify_writes: reads them back).
// The mapping is journalled only afterwards, not while the writes are in
// flight: recording may read metadata, and a thread that holds an io_uring
// ring while it waits for another deadlocks the ring pool (16 concurrent
// fsyncs did, with a cold checksum table).
Status MountedFs::write_pages(Inode& n, WritebackBuffers& wb) {
  std::vector<PendingPage>& batch = wb.batch;
  for (PendingPage& pp : batch) pp.checksum = block_checksum(pp.phys, pp.bytes, kPageSize);
  if (writeback_hook_) writeback_hook_(n.ino);
  std::vector<IoRequest>& reqs = wb.reqs;
  reqs.clear();
  for (size_t i = 0; i < batch.size(); i++) {
    if (reqs.empty() || batch[i].phys != batch[i - 1].phys + 1 ||
        reqs.back().iov_count == IoRequest::kMaxSegments) {
      reqs.emplace_back();
      reqs.back().op = IoOp::kWrite;
      reqs.back().blocknr = batch[i].phys;
    }
    reqs.back().add(const_cast<uint8_t*>(batch[i].bytes), kPageSize);
  }
  std::vector<IoRequest*>& ptrs = wb.ptrs;
  ptrs.clear();
  for (auto& r : reqs) ptrs.push_back(&r);
  SFS_TRY(dev_->submit_and_wait(ptrs));
  if (opts_.verify_writes) return verify_written(n, batch);
  return Status::Ok();
}

// 4. Journals the new mapping of the written batch in one handle; a
// mapping that fails part way (ENOSPC for a tree node) is taken back in
// the same handle, so the pages stay dirty and nothing claims blocks it
// did not get.
Status MountedFs::journal_mapping(Inode& n, WritebackBuffers& wb) {
  Handle h = journal_->start();
  std::lock_guard lk(n.mu);
  RecordedMapping done;
  Status s = record_mapping(h, n, wb, done);
  if (s.ok()) {
    c_->blocks_written += wb.batch.size();
    return s;
  }
  if (journal_->error() == 0) {
    if (Status u = take_back_mapping(h, n, wb, done); !u.ok()) {
      SFS_LOG("writeback of inode %llu: cannot take back a partial mapping: %s",
              (unsigned long long)n.ino, std::strerror(u.error()));
      journal_->abort(EIO);
    }
  }
  return s;
}

// 5. Writers waiting on these pages may go on. A failed write must not
// leave the only copy of the data clean: the pages stay dirty (the next
// writeback tries again) and nothing claims the data is on disk. A
// shadowed page was replaced by its newer, dirty copy already.
void MountedFs::end_writeback(std::vector<PendingPage>& batch, Status s) {
  for (PendingPage& pp : batch) (void)pages_->end_page_writeback(pp.page);
  if (!s.ok()) redirty_pages(batch);
  batch.clear();
}

// Journaled data (journal/FORMAT.md): a page rewritten in a short run
// keeps its block. Its bytes are copied into an image the journal owns,
// the checksum table records the image's checksum, and both commit
// together: the commit writes the image with the log (one write, one
// flush, where a redirected page costs a data write, then the log) and the
// checkpoint writes it home. Until then readers that miss the cache get
// the image from the journal (read_page). The copy is what is checksummed
// and written, so the page itself is stable the moment it is copied.
// Long runs stream better to new blocks (one write, no second copy), and
// holes, unwritten extents and appends need new blocks anyway.
void MountedFs::journal_rewrites(Inode& n, std::vector<PendingPage>& batch,
                                 std::vector<PendingPage>& rest) {
  rest.clear();
  const size_t max_run = opts_.journal_data_pages;
  std::vector<bool> short_run(batch.size(), false);
  bool any = false;
  for (size_t i = 0; i < batch.size();) {
    size_t run = 1;
    while (i + run < batch.size() && batch[i + run].page->index() == batch[i].page->index() + run)
      run++;
    if (run <= max_run) {
      std::fill(short_run.begin() + long(i), short_run.begin() + long(i + run), true);
      any = true;
    }
    i += run;
  }
  if (!any) {
    rest.swap(batch);
    return;
  }
  // The same write-after-checksum window as the batch path's: the pages
  // are under writeback until their bytes are copied.
  if (writeback_hook_) writeback_hook_(n.ino);
  {
    Handle h = journal_->start();
    std::lock_guard lk(n.mu);
    Status s = load_map(n);
    size_t journaled = 0;
    uint64_t written_end = 0;
    for (size_t i = 0; i < batch.size(); i++) {
      PendingPage& pp = batch[i];
      bool take = s.ok() && short_run[i] && journaled < kMaxJournaledPerHandle;
      auto e = take ? n.map->find(uint32_t(pp.page->index())) : std::nullopt;
      if (!e || e->unwritten) {
        rest.push_back(std::move(pp));
        continue;
      }
      uint64_t phys = e->physical + (pp.page->index() - e->logical);
      auto image = std::make_shared<MetaBlock>();
      std::memcpy(image->bytes.data(), pp.bytes, kPageSize);
      uint64_t csum = block_checksum(phys, image->bytes.data(), kPageSize);
      // A failure here (a checksum table block unreadable, the journal
      // aborted) leaves the page to the ordinary path, which reports it.
      if (!csums_->set(h, phys, csum).ok()) {
        rest.push_back(std::move(pp));
        continue;
      }
      h.log_data_block(phys, std::move(image), csum);
      written_end = std::max(written_end, (pp.page->index() + 1) * kPageSize);
      (void)pages_->end_page_writeback(pp.page);
      pp.page.reset();
      journaled++;
    }
    c_->journaled_data_blocks += journaled;
    // A rewrite of the last page of a file that grew: the stored size
    // follows in the same handle. A failure leaves it behind, for the next
    // writeback or fsync to store.
    if (uint64_t size = written_size(n, written_end); size != n.stored_size)
      (void)store_inode_sized(h, n, n.disk, size);
  }
  batch.clear();
}

// The fallible tree edits come first, so a failure there (ENOSPC for a
// tree node) leaves nothing else to take back; what follows can fail only
// when the journal has aborted, and then nothing commits anyway.
Status MountedFs::record_mapping(Handle& h, Inode& n, WritebackBuffers& wb,
                                 RecordedMapping& done) {
  std::vector<PendingPage>& batch = wb.batch;
  std::vector<PhysRange>& replaced = wb.replaced;
  replaced.clear();
  for (size_t i = 0; i < batch.size();) {
    size_t run = 1;
    while (i + run < batch.size() &&
           batch[i + run].page->index() == batch[i].page->index() + run &&
           batch[i + run].phys == batch[i].phys + run)
      run++;
    for (size_t k = i; k < i + run; k++) {
      PendingPage& pp = batch[k];
      auto e = n.map->find(uint32_t(pp.page->index()));
      pp.old_phys = e ? e->physical + (pp.page->index() - e->logical) : 0;
      pp.old_unwritten = e && e->unwritten;
    }
    SFS_TRY(n.map->map(h, *cache_, node_allocator(batch[i].phys), uint32_t(batch[i].page->index()),
                       uint32_t(run), batch[i].phys, false, &replaced));
    done.mapped_pages = i + run;
    for (size_t k = i; k < i + run; k++) SFS_TRY(csums_->set(h, batch[k].phys, batch[k].checksum));
    i += run;
  }
  for (const PhysRange& r : wb.reserved) SFS_TRY(alloc_->commit_reserved(h, r));
  done.reserved_committed = true;
  n.disk.blocks += batch.size();
  done.blocks_added = batch.size();
  done.old_freed = true;  // set first: a partial free still needs taking back
  for (const PhysRange& r : replaced) {
    SFS_TRY(alloc_->free_blocks(h, r));
    uint64_t gone = std::min(n.disk.blocks, r.count);
    n.disk.blocks -= gone;
    done.blocks_removed += gone;
  }
  // The stored size may now cover the pages mapped here, in the handle
  // that maps them (as ext4 moves i_disksize when writeback maps blocks).
  return store_inode_sized(h, n, n.disk, written_size(n, pages_end(batch)));
}

// Puts batch[0, mapped_pages) back on their old blocks (or holes), gives
// the new blocks back, and takes back the freeing of the old ones, all in
// the handle that recorded them (still open: nothing of it has committed).
Status MountedFs::take_back_mapping(Handle& h, Inode& n, WritebackBuffers& wb,
                                    const RecordedMapping& done) {
  std::vector<PendingPage>& batch = wb.batch;
  std::vector<PhysRange> dropped;  // the new blocks, unmapped again
  for (size_t k = 0; k < done.mapped_pages; k++) {
    const PendingPage& pp = batch[k];
    uint32_t idx = uint32_t(pp.page->index());
    if (pp.old_phys)
      SFS_TRY(n.map->map(h, *cache_, node_allocator(pp.old_phys), idx, 1, pp.old_phys,
                         pp.old_unwritten, &dropped));
    else
      SFS_TRY(n.map->unmap(h, *cache_, node_allocator(0), idx, 1, &dropped));
  }
  if (done.reserved_committed) {
    for (const PhysRange& r : wb.reserved) SFS_TRY(alloc_->free_blocks(h, r));
  } else {
    for (const PhysRange& r : wb.reserved) alloc_->unreserve(r);
  }
  if (done.old_freed) {
    for (size_t k = 0; k < done.mapped_pages; k++) {
      const PendingPage& pp = batch[k];
      if (!pp.old_phys) continue;
      SFS_TRY(alloc_->unfree_blocks(h, {pp.old_phys, 1}));
      // free_blocks dropped the block's data tag; the block is referenced
      // again, with the checksum it always had.
      if (!pp.old_unwritten) {
        auto c = csums_->get(pp.old_phys);
        if (!c.ok()) return Error{c.error()};
        SFS_TRY(csums_->set(h, pp.old_phys, *c));
      }
    }
  }
  n.disk.blocks += done.blocks_removed;
  n.disk.blocks -= std::min(n.disk.blocks, done.blocks_added);
  return store_inode(h, n);
}

void MountedFs::redirty_pages(std::vector<PendingPage>& batch) {
  for (PendingPage& pp : batch) {
    pages_->lock_page(pp.page);
    if (pp.page->attached() && !pp.page->dirty()) (void)pages_->set_page_dirty(pp.page);
    pages_->unlock_page(pp.page);
  }
}

// verify_writes: read each block back and compare with the checksum
// recorded for it, as a T10 DIF disk checks the guard tag.
Status MountedFs::verify_written(Inode& n, const std::vector<PendingPage>& batch) {
  AlignedBlock buf;
  Status result;
  for (const PendingPage& pp : batch) {
    SFS_TRY(dev_->read(pp.phys, buf.data(), kBlockSize));
    uint64_t actual = block_checksum(pp.phys, buf.data(), kBlockSize);
    if (actual != pp.checksum) {
      c_->integrity_errors_write++;
      SFS_LOG("integrity error (write verify): inode %llu offset %llu block %llu: expected "
              "checksum %016llx, actual %016llx",
              (unsigned long long)n.ino, (unsigned long long)(pp.page->index() * kPageSize),
              (unsigned long long)pp.phys, (unsigned long long)pp.checksum,
              (unsigned long long)actual);
      result = err(EIO);
    }
  }
  return result;
}

Status MountedFs::writeback_all() {
  // Nothing reaches the disk after a shutdown (and the flusher must not
  // retry, and log, every second).
  if (shut_down_) return err(EIO);
  return write_back_everything();
}

Status MountedFs::write_back_everything() {
  Status first;
  for (uint64_t ino : pages_->dirty_inodes()) {
    auto n = get_inode(ino);
    if (!n.ok()) continue;
    Status s = writeback_inode(**n, 0);
    if (first.ok() && !s.ok()) first = s;
  }
  // Attribute-only changes (size and mtime of writes already written back
  // by fsync, etc.): only the inodes write() marked, not the whole cache.
  std::unordered_set<uint64_t> dirty;
  {
    std::lock_guard lk(dirty_mu_);
    dirty.swap(dirty_inodes_);
  }
  for (uint64_t ino : dirty) {
    auto n = get_inode(ino);
    if (!n.ok()) continue;  // freed meanwhile
    Status s = write_inode_if_dirty(**n);
    if (first.ok() && !s.ok()) first = s;
  }
  return first;
}

}  // namespace stablefs
