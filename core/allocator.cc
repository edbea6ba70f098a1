#include "core/allocator.h"

#include <bit>
#include <cstdio>

#include "core/base/endian.h"

namespace stablefs {

// One bitmap: the in-memory "in use" bits plus the on-disk blocks.
class Bitmap {
 public:
  Bitmap(uint64_t bits, uint64_t first_disk_block, uint32_t magic)
      : bits_(bits), words_((bits + 63) / 64, 0), first_(first_disk_block), magic_(magic) {}

  Status load(BufferCache& cache) {
    uint64_t nblocks = (bits_ + kBitsPerBitmapBlock - 1) / kBitsPerBitmapBlock;
    for (uint64_t i = 0; i < nblocks; i++) {
      auto buf = cache.read(first_ + i, magic_);
      if (!buf.ok()) return Error{buf.error()};
      const uint8_t* p = (*buf)->payload();
      for (uint64_t b = 0; b < kBitsPerBitmapBlock; b++) {
        uint64_t bit = i * kBitsPerBitmapBlock + b;
        if (bit >= bits_) break;
        if (p[b / 8] & (1u << (b % 8))) set_mem(bit);
      }
      disk_.push_back(std::move(*buf));
    }
    return Status::Ok();
  }

  bool test(uint64_t bit) const { return words_[bit / 64] >> (bit % 64) & 1; }
  void set_mem(uint64_t bit) {
    if (!test(bit)) used_++;
    words_[bit / 64] |= 1ull << (bit % 64);
  }
  void clear_mem(uint64_t bit) {
    if (test(bit)) used_--;
    words_[bit / 64] &= ~(1ull << (bit % 64));
  }

  // Sets or clears [start, start+count) in the on-disk bitmap blocks.
  Status set_disk(Handle& h, uint64_t start, uint64_t count, bool value) {
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

  // First clear bit at or after `from`, wrapping once; bits_ if none.
  uint64_t find_clear(uint64_t from) const {
    if (used_ >= bits_) return bits_;
    for (int pass = 0; pass < 2; pass++) {
      uint64_t start = pass == 0 ? from : 0;
      uint64_t end = pass == 0 ? bits_ : std::min(from, bits_);
      uint64_t bit = start;
      while (bit < end) {
        uint64_t w = words_[bit / 64] | ((1ull << (bit % 64)) - 1);
        if (w != ~0ull) {
          uint64_t found = (bit & ~63ull) + std::countr_one(w);
          if (found < end) return found;
          break;  // only padding bits past `end` were clear: try the next pass
        }
        bit = (bit & ~63ull) + 64;
      }
    }
    return bits_;
  }

  uint64_t size() const { return bits_; }
  uint64_t used() const { return used_; }

 private:
  uint64_t bits_;
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

Result<std::unique_ptr<Allocator>> Allocator::load(BufferCache& cache, const Superblock& sb) {
  std::unique_ptr<Allocator> a(new Allocator());
  a->blocks_ = std::make_unique<Bitmap>(sb.total_blocks, sb.block_bitmap_start, kMagicBlockBitmap);
  a->inodes_ = std::make_unique<Bitmap>(sb.inode_count + 1, sb.inode_bitmap_start, kMagicInodeBitmap);
  SFS_TRY(a->blocks_->load(cache));
  SFS_TRY(a->inodes_->load(cache));
  // The metadata regions and inode 0 are never allocatable, whatever the
  // disk says: a corrupt bitmap must not hand out the journal.
  for (uint64_t b = 0; b < sb.data_start; b++) a->blocks_->set_mem(b);
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

Result<PhysRange> Allocator::reserve_blocks(uint64_t goal, uint64_t want) {
  std::lock_guard lk(mu_);
  if (want == 0) want = 1;
  if (goal >= blocks_->size()) goal = 0;
  if (want <= kRecycleMaxRun && (goal == 0 || blocks_->test(goal))) {
    PhysRange r = take_recycled(want);
    if (r.count) return r;
  }
  if (goal == 0) goal = block_goal_;
  uint64_t start = blocks_->find_clear(goal);
  if (start >= blocks_->size()) return err(ENOSPC);
  uint64_t count = 1;
  while (count < want && start + count < blocks_->size() && !blocks_->test(start + count)) count++;
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
  uint64_t ino = inodes_->find_clear(inode_goal_);
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
