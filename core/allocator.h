// Block and inode allocation over the on-disk bitmaps.
//
// Two views of each bitmap: the on-disk bitmap blocks (journalled metadata,
// the committed truth after a crash) and an in-memory "in use" bitmap that
// decides what may be handed out. A free clears the on-disk bit inside the
// freeing handle's transaction, but the in-memory bit stays set until that
// transaction is durable (release_committed). So a freed block is never
// reused before its freeing commit is on stable storage (DESIGN.md, crash
// consistency). No I/O can be in flight on a block when it is freed: data
// pages are freed only after truncate has waited out their writeback, and
// a redirect-on-write frees the old block only after the new write completed.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "core/base/format.h"
#include "core/base/result.h"
#include "core/extent_map.h"
#include "journal/buffer.h"
#include "journal/journal.h"

namespace stablefs {

class Bitmap;

class Allocator {
 public:
  // Raises the superblock's high-water marks (core/lazy_init.h) to
  // (inode_hwm, block_hwm): initialises the metadata blocks they newly
  // cover and makes the new marks durable before it returns. Called with
  // the allocator's mutex held, so it must take no lock that is ever held
  // while calling into the allocator (MountedFs::sb_mu_ is a leaf).
  using RaiseMarks = std::function<Status(uint64_t inode_hwm, uint64_t block_hwm)>;

  // Loads the bitmap blocks under the marks, nothing above them: what is
  // above is free. Without raise, allocation stops at the marks (ENOSPC).
  static Result<std::unique_ptr<Allocator>> load(BufferCache& cache, const Superblock& sb,
                                                 RaiseMarks raise = nullptr);
  ~Allocator();

  // Up to `want` contiguous free blocks, starting at or after `goal` when
  // possible. ENOSPC when the filesystem is full. A small request whose
  // goal is taken (a redirect-on-write rewrite) or absent reuses the most
  // recently freed blocks first: they were written before, so on an image
  // file they are already allocated in the host filesystem, and a rewrite
  // workload keeps to its own footprint instead of marching through fresh,
  // sparse space whose every flush pays for host allocation.
  Result<PhysRange> alloc_blocks(Handle& h, uint64_t goal, uint64_t want);
  Status free_blocks(Handle& h, PhysRange r);
  // Takes back a free_blocks(h, r) of the same, still running transaction
  // (a writeback whose data write failed restores the old mapping). EINVAL
  // when r is not pending in h's transaction.
  Status unfree_blocks(Handle& h, PhysRange r);

  // Data writeback allocates in two steps, so the blocks, the mapping and
  // the checksum all land in one transaction after the data I/O completed:
  // reserve_blocks takes blocks in memory only; commit_reserved sets their
  // on-disk bits inside the handle that maps them; unreserve gives them
  // back after a failed write.
  Result<PhysRange> reserve_blocks(uint64_t goal, uint64_t want);
  Status commit_reserved(Handle& h, PhysRange r);
  void unreserve(PhysRange r);

  Result<uint64_t> alloc_inode(Handle& h);
  Status free_inode(Handle& h, uint64_t ino);

  // Makes everything freed by transactions <= txid allocatable again.
  void release_committed(uint64_t txid);
  // The block ranges release_committed(txid) would make allocatable: free
  // on stable storage, and still out of the allocator's reach, so nothing
  // can be written to them until release_committed (the time to discard).
  std::vector<PhysRange> frees_committed_by(uint64_t txid) const;

  // FITRIM: calls `discard` on every run of at least min_run free blocks
  // in [first, end), in pieces of at most kDiscardPiece blocks. Free means
  // clear in memory: not in use, not reserved, not waiting for its freeing
  // commit, so no I/O is in flight there. Each piece is discarded with the
  // mutex held, so nothing can be allocated in it, nor the mark raised over
  // it, meanwhile. Blocks above the mark are free (never written since
  // mkfs) and discarded as well. The number of blocks discarded.
  using DiscardFn = std::function<Status(PhysRange)>;
  static constexpr uint64_t kDiscardPiece = 16384;  // 64 MiB
  Result<uint64_t> discard_free(uint64_t first, uint64_t end, uint64_t min_run,
                                const DiscardFn& discard);

  uint64_t free_block_count() const;
  uint64_t free_inode_count() const;
  // Blocks that are free on disk but wait for their freeing commit.
  uint64_t pending_free_blocks() const;

 private:
  Allocator() = default;
  // The first free bit of `bm` at or after `from`; when there is none
  // below the mark, the mark is raised (all above it is free) before the
  // search wraps to the start, so blocks are handed out in the order they
  // were before lazy initialisation. With wrap_first the search wraps
  // before it raises the mark: inode numbers are reused rather than the
  // table initialised further (a create/unlink churn would otherwise
  // initialise all of it). bm.size() when all are in use.
  Result<uint64_t> find_free(Bitmap& bm, uint64_t from, bool wrap_first);
  Status raise_mark(Bitmap& bm);
  // Protects everything below. Held across a raise of the marks (I/O, and
  // MountedFs::sb_mu_ inside it); otherwise a leaf lock.
  mutable std::mutex mu_;
  BufferCache* cache_ = nullptr;
  RaiseMarks raise_;
  std::unique_ptr<Bitmap> blocks_;
  std::unique_ptr<Bitmap> inodes_;
  std::map<uint64_t, std::vector<PhysRange>> pending_blocks_;  // txid -> ranges
  std::map<uint64_t, std::vector<uint64_t>> pending_inodes_;   // txid -> inos
  // Small ranges made free by release_committed, newest last (a bounded
  // stack). Entries may have been allocated since; the bitmap decides.
  std::vector<PhysRange> recycled_;
  uint64_t pending_block_count_ = 0;
  uint64_t block_goal_ = 0;
  // Takes up to `want` free blocks from the newest recycled range; an
  // empty range when none is left.
  PhysRange take_recycled(uint64_t want);
  uint64_t inode_goal_ = 0;
};

}  // namespace stablefs
