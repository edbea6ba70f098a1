#include "core/allocator.h"

#include <bit>
#include <cstdio>

#include "core/base/endian.h"
#include "core/lazy_init.h"

namespace stablefs {

// One bitmap: the in-memory "in use" bits plus the on-disk blocks, of
// which only those under the high-water mark (`limit_` bits) are loaded:
// every bit at or above it is free.
class Bitmap {
 public:
  Bitmap(uint64_t bits, uint64_t limit, uint64_t first_disk_block, uint32_t magic)
      : bits_(bits), first_(first_disk_block), magic_(magic) {
    limit_ = std::min(limit, bits);
  }

  Status load(BufferCache& cache) { return grow(cache, limit_, 0); }

  // Moves the mark to new_limit, reading the bitmap blocks it now covers
  // and taking in their bits from old_limit on (a block the old mark cut
  // through is loaded already; its bits above the mark are taken now).
  Status grow(BufferCache& cache, uint64_t new_limit, uint64_t old_limit) {
    limit_ = std::min(new_limit, bits_);
    words_.resize((limit_ + 63) / 64, 0);
    uint64_t nblocks = (limit_ + kBitsPerBitmapBlock - 1) / kBitsPerBitmapBlock;
    while (disk_.size() < nblocks) {
      auto buf = cache.read(first_ + disk_.size(), magic_);
      if (!buf.ok()) return Error{buf.error()};
      disk_.push_back(std::move(*buf));
    }
    // A byte at a time where it can: a large device's bitmaps hold
    // millions of bits, and this runs at mount.
    for (uint64_t bit = old_limit; bit < limit_;) {
      const uint8_t* p = disk_[bit / kBitsPerBitmapBlock]->payload();
      const uint64_t block_end = std::min(limit_, (bit / kBitsPerBitmapBlock + 1) * kBitsPerBitmapBlock);
      for (; bit < block_end; bit++) {
        uint64_t b = bit % kBitsPerBitmapBlock;
        if (b % 8 == 0 && bit + 8 <= block_end && (p[b / 8] == 0 || p[b / 8] == 0xff)) {
          if (p[b / 8] == 0xff) {
            uint64_t& w = words_[bit / 64];
            used_ += 8 - uint64_t(std::popcount((w >> (bit % 64)) & 0xff));
            w |= 0xffull << (bit % 64);
          }
          bit += 7;
          continue;
        }
        if (p[b / 8] & (1u << (b % 8))) set_mem(bit);
      }
    }
    return Status::Ok();
  }

  bool test(uint64_t bit) const {
    return bit < limit_ && (words_[bit / 64] >> (bit % 64) & 1);
  }
  // Only bits under the mark are ever set (the allocator raises it first).
  void set_mem(uint64_t bit) {
    if (!test(bit)) used_++;
    words_[bit / 64] |= 1ull << (bit % 64);
  }
  // set_mem for every bit in [0, end), a word at a time (the metadata
  // region of a large device is millions of bits, and this runs at mount).
  void set_mem_prefix(uint64_t end) {
    uint64_t bit = 0;
    for (; bit < end && bit % 64 != 0; bit++) set_mem(bit);
    for (; bit + 64 <= end; bit += 64) {
      used_ += 64 - uint64_t(std::popcount(words_[bit / 64]));
      words_[bit / 64] = ~0ull;
    }
    for (; bit < end; bit++) set_mem(bit);
  }
  void clear_mem(uint64_t bit) {
    if (test(bit)) used_--;
    if (bit < limit_) words_[bit / 64] &= ~(1ull << (bit % 64));
  }

  // Sets or clears [start, start+count) in the on-disk bitmap blocks.
  Status set_disk(Handle& h, uint64_t start, uint64_t count, bool value) {
    if (start + count > limit_) return err(EUCLEAN);
    uint64_t bit = start;
    while (bit < start + count) {
      MetaBuffer& buf = *disk_[bit / kBitsPerBitmapBlock];
      SFS_TRY(h.get_write_access(buf));
      uint8_t* p = buf.payload();
      uint64_t block_end = (bit / kBitsPerBitmapBlock + 1) * kBitsPerBitmapBlock;
      for (; bit < start + count && bit < block_end; bit++) {
        uint64_t b = bit % kBitsPerBitmapBlock;
        if (value)
          p[b / 8] |= uint8_t(1u << (b % 8));
        else
          p[b / 8] &= uint8_t(~(1u << (b % 8)));
      }
      h.dirty_metadata(buf);
    }
    return Status::Ok();
  }

  // First clear bit in [start, end) (end <= limit); `end` if none.
  uint64_t find_clear(uint64_t start, uint64_t end) const {
    uint64_t bit = start;
    while (bit < end) {
      uint64_t w = words_[bit / 64] | ((1ull << (bit % 64)) - 1);
      if (w != ~0ull) {
        uint64_t found = (bit & ~63ull) + std::countr_one(w);
        return std::min(found, end);  // a clear padding bit past `end` is no find
      }
      bit = (bit & ~63ull) + 64;
    }
    return end;
  }
  // First set bit in [start, end) (end <= limit); `end` if none.
  uint64_t find_set(uint64_t start, uint64_t end) const {
    uint64_t bit = start;
    while (bit < end) {
      uint64_t w = words_[bit / 64] & ~((1ull << (bit % 64)) - 1);
      if (w != 0) return std::min<uint64_t>((bit & ~63ull) + std::countr_zero(w), end);
      bit = (bit & ~63ull) + 64;
    }
    return end;
  }
  bool full_below_limit() const { return used_ >= limit_; }

  uint64_t size() const { return bits_; }
  uint64_t limit() const { return limit_; }
  uint64_t used() const { return used_; }

 private:
  uint64_t bits_;
  uint64_t limit_;
  std::vector<uint64_t> words_;
  uint64_t used_ = 0;
  uint64_t first_;
  uint32_t magic_;
  std::vector<std::shared_ptr<MetaBuffer>> disk_;
};

namespace {
// Rewrites of up to this many blocks reuse freed blocks; longer runs are
// streaming writes, which want fresh contiguous space.
constexpr uint64_t kRecycleMaxRun = 8;
// Bound on remembered ranges (memory, and the work to skip stale ones).
constexpr size_t kRecycleCapacity = 1 << 16;
}  // namespace

Allocator::~Allocator() = default;

Result<std::unique_ptr<Allocator>> Allocator::load(BufferCache& cache, const Superblock& sb,
                                                   RaiseMarks raise) {
  std::unique_ptr<Allocator> a(new Allocator());
  a->cache_ = &cache;
  a->raise_ = std::move(raise);
  a->blocks_ = std::make_unique<Bitmap>(sb.total_blocks, sb.block_hwm, sb.block_bitmap_start,
                                        kMagicBlockBitmap);
  a->inodes_ = std::make_unique<Bitmap>(sb.inode_count + 1, sb.inode_hwm + 1,
                                        sb.inode_bitmap_start, kMagicInodeBitmap);
  SFS_TRY(a->blocks_->load(cache));
  SFS_TRY(a->inodes_->load(cache));
  // The metadata regions and inode 0 are never allocatable, whatever the
  // disk says: a corrupt bitmap must not hand out the journal.
  a->blocks_->set_mem_prefix(sb.data_start);
  a->inodes_->set_mem(0);
  a->block_goal_ = sb.data_start;
  a->inode_goal_ = 1;
  return a;
}

Result<PhysRange> Allocator::alloc_blocks(Handle& h, uint64_t goal, uint64_t want) {
  auto r = reserve_blocks(goal, want);
  if (!r.ok()) return r;
  if (Status s = commit_reserved(h, *r); !s.ok()) {
    unreserve(*r);
    return Error{s.error()};
  }
  return r;
}

Result<uint64_t> Allocator::find_free(Bitmap& bm, uint64_t from, bool wrap_first) {
  from = std::min(from, bm.limit());
  if (!bm.full_below_limit()) {
    uint64_t hit = bm.find_clear(from, bm.limit());
    if (hit < bm.limit()) return hit;
    if (wrap_first && (hit = bm.find_clear(0, from)) < from) return hit;
  }
  if (bm.limit() < bm.size()) {
    uint64_t old_limit = bm.limit();
    SFS_TRY(raise_mark(bm));
    return bm.find_clear(old_limit, bm.limit());
  }
  if (bm.full_below_limit()) return bm.size();
  uint64_t hit = bm.find_clear(0, from);
  return hit < from ? hit : bm.size();
}

Status Allocator::raise_mark(Bitmap& bm) {
  if (!raise_) return err(ENOSPC);
  const bool inodes = &bm == inodes_.get();
  // Inode n is bit n: the inode mark is the bitmap's limit minus one.
  uint64_t inode_hwm = inodes_->limit() - 1;
  uint64_t block_hwm = blocks_->limit();
  if (inodes)
    inode_hwm = std::min(inodes_->size() - 1, inode_hwm + kLazyInodeStep);
  else
    block_hwm = std::min(blocks_->size(), block_hwm + kLazyBlockStep);
  SFS_TRY(raise_(inode_hwm, block_hwm));
  uint64_t old_limit = bm.limit();
  return bm.grow(*cache_, inodes ? inode_hwm + 1 : block_hwm, old_limit);
}

Result<PhysRange> Allocator::reserve_blocks(uint64_t goal, uint64_t want) {
  std::lock_guard lk(mu_);
  if (want == 0) want = 1;
  if (goal >= blocks_->size()) goal = 0;
  if (want <= kRecycleMaxRun && (goal == 0 || blocks_->test(goal))) {
    PhysRange r = take_recycled(want);
    if (r.count) return r;
  }
  if (goal == 0) goal = block_goal_;
  auto found = find_free(*blocks_, goal, false);
  if (!found.ok()) return Error{found.error()};
  uint64_t start = *found;
  if (start >= blocks_->size()) return err(ENOSPC);
  // A run stops at the mark: streaming writes raise it on the next call.
  uint64_t count = 1;
  while (count < want && start + count < blocks_->limit() && !blocks_->test(start + count))
    count++;
  for (uint64_t b = start; b < start + count; b++) blocks_->set_mem(b);
  block_goal_ = start + count;
  return PhysRange{start, count};
}

PhysRange Allocator::take_recycled(uint64_t want) {
  while (!recycled_.empty()) {
    PhysRange& top = recycled_.back();
    uint64_t start = top.start;
    uint64_t count = 0;
    while (count < want && count < top.count && !blocks_->test(start + count)) count++;
    if (count == 0) {
      // Taken by someone else since it was freed: skip its first block.
      if (--top.count == 0) recycled_.pop_back();
      else top.start++;
      continue;
    }
    for (uint64_t b = start; b < start + count; b++) blocks_->set_mem(b);
    top.start += count;
    top.count -= count;
    if (top.count == 0) recycled_.pop_back();
    return PhysRange{start, count};
  }
  return PhysRange{};
}

Status Allocator::commit_reserved(Handle& h, PhysRange r) {
  std::lock_guard lk(mu_);
  return blocks_->set_disk(h, r.start, r.count, true);
}

void Allocator::unreserve(PhysRange r) {
  std::lock_guard lk(mu_);
  for (uint64_t b = r.start; b < r.start + r.count; b++) blocks_->clear_mem(b);
}

Status Allocator::free_blocks(Handle& h, PhysRange r) {
  std::lock_guard lk(mu_);
  if (r.count == 0) return Status::Ok();
  if (r.start + r.count > blocks_->size()) return err(EUCLEAN);
  SFS_TRY(blocks_->set_disk(h, r.start, r.count, false));
  h.drop_data_tags(r.start, r.count);  // reusable once this commit is durable
  h.forget_data_blocks(r.start, r.count);  // and no logged image may land there
  pending_blocks_[h.txid()].push_back(r);
  pending_block_count_ += r.count;
  return Status::Ok();
}

Status Allocator::unfree_blocks(Handle& h, PhysRange r) {
  std::lock_guard lk(mu_);
  auto it = pending_blocks_.find(h.txid());
  if (it == pending_blocks_.end()) return err(EINVAL);
  std::vector<PhysRange>& ranges = it->second;
  for (size_t i = 0; i < ranges.size(); i++) {
    PhysRange& p = ranges[i];
    if (r.start < p.start || r.start + r.count > p.start + p.count) continue;
    SFS_TRY(blocks_->set_disk(h, r.start, r.count, true));
    for (uint64_t b = r.start; b < r.start + r.count; b++) h.keep_data_block(b);
    // Cut r out of p, keeping what lies either side.
    PhysRange after{r.start + r.count, p.start + p.count - (r.start + r.count)};
    p.count = r.start - p.start;
    if (after.count) ranges.push_back(after);
    if (p.count == 0) ranges.erase(ranges.begin() + long(i));
    pending_block_count_ -= r.count;
    return Status::Ok();
  }
  return err(EINVAL);
}

Result<uint64_t> Allocator::alloc_inode(Handle& h) {
  std::lock_guard lk(mu_);
  auto found = find_free(*inodes_, inode_goal_, true);
  if (!found.ok()) return Error{found.error()};
  uint64_t ino = *found;
  if (ino >= inodes_->size() || ino == 0) return err(ENOSPC);
  SFS_TRY(inodes_->set_disk(h, ino, 1, true));
  inodes_->set_mem(ino);
  inode_goal_ = ino + 1;
  return ino;
}

Status Allocator::free_inode(Handle& h, uint64_t ino) {
  std::lock_guard lk(mu_);
  if (ino == 0 || ino >= inodes_->size()) return err(EUCLEAN);
  SFS_TRY(inodes_->set_disk(h, ino, 1, false));
  pending_inodes_[h.txid()].push_back(ino);
  return Status::Ok();
}

void Allocator::release_committed(uint64_t txid) {
  std::lock_guard lk(mu_);
  while (!pending_blocks_.empty() && pending_blocks_.begin()->first <= txid) {
    for (const PhysRange& r : pending_blocks_.begin()->second) {
      for (uint64_t b = r.start; b < r.start + r.count; b++) blocks_->clear_mem(b);
      pending_block_count_ -= r.count;
      if (r.count <= kRecycleMaxRun) {
        if (recycled_.size() == kRecycleCapacity)
          recycled_.erase(recycled_.begin(), recycled_.begin() + kRecycleCapacity / 2);
        recycled_.push_back(r);
      }
    }
    pending_blocks_.erase(pending_blocks_.begin());
  }
  while (!pending_inodes_.empty() && pending_inodes_.begin()->first <= txid) {
    for (uint64_t ino : pending_inodes_.begin()->second) inodes_->clear_mem(ino);
    pending_inodes_.erase(pending_inodes_.begin());
  }
}

std::vector<PhysRange> Allocator::frees_committed_by(uint64_t txid) const {
  std::lock_guard lk(mu_);
  std::vector<PhysRange> out;
  for (auto it = pending_blocks_.begin(); it != pending_blocks_.end() && it->first <= txid; ++it)
    out.insert(out.end(), it->second.begin(), it->second.end());
  return out;
}

Result<uint64_t> Allocator::discard_free(uint64_t first, uint64_t end, uint64_t min_run,
                                         const DiscardFn& discard) {
  uint64_t discarded = 0;
  uint64_t accepted_end = 0;  // a run found long enough goes on to here
  for (uint64_t at = first;;) {
    std::lock_guard lk(mu_);
    end = std::min(end, blocks_->size());
    const uint64_t limit = blocks_->limit();
    uint64_t start = at < limit ? blocks_->find_clear(at, limit) : at;
    if (start >= end) break;
    // Above the mark all is free: a run that reaches it goes on to `end`.
    uint64_t run_end = start < limit ? blocks_->find_set(start, limit) : end;
    if (run_end >= limit) run_end = end;
    run_end = std::min(run_end, end);
    if (start >= accepted_end && run_end - start < min_run) {
      at = run_end;
      continue;
    }
    accepted_end = run_end;
    // One piece per lock hold: allocation waits for one discard at most.
    PhysRange piece{start, std::min(run_end - start, kDiscardPiece)};
    SFS_TRY(discard(piece));
    discarded += piece.count;
    at = piece.start + piece.count;
  }
  return discarded;
}

uint64_t Allocator::free_block_count() const {
  std::lock_guard lk(mu_);
  return blocks_->size() - blocks_->used();
}

uint64_t Allocator::free_inode_count() const {
  std::lock_guard lk(mu_);
  return inodes_->size() - inodes_->used();
}

uint64_t Allocator::pending_free_blocks() const {
  std::lock_guard lk(mu_);
  return pending_block_count_;
}

}  // namespace stablefs
