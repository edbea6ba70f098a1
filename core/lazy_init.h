// Lazy initialisation (core/FORMAT.md, "Lazy initialisation"): mkfs
// writes only the start of the inode table, the bitmaps and the checksum
// table, up to the superblock's high-water marks, so its cost does not
// grow with the device. The engine raises a mark when an allocation finds
// nothing free below it. Raising is ordered so that a crash anywhere
// leaves a consistent image: first the newly covered metadata blocks are
// written (sealed, all free) and flushed, and only then is the mark
// written to the superblocks. Until then nothing reads those blocks, and
// nothing allocated from them can be committed.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>

#include "core/base/format.h"
#include "core/base/result.h"
#include "core/io/block_device.h"
#include "journal/buffer.h"

namespace stablefs {

// How far a mark moves at a time (and where mkfs puts it): 1024 inode-table
// blocks (4 MiB) and 8 block-bitmap blocks with their 512 checksum-table
// blocks (2 MiB, covering 1 GiB of data). A raise writes that much and
// flushes three times, so a create-heavy or streaming workload pays for
// it once per 15360 inodes or per GiB.
constexpr uint64_t kLazyInodeStep = 1024 * kInodesPerBlock;
constexpr uint64_t kLazyBlockStep = 8 * kBitsPerBitmapBlock;

// Writes blocks [start, start + count) in requests of up to 64 blocks,
// each zero-filled and then filled by fill(block, blocknr); reports
// (blocks written so far, total) after each request.
class RegionWriter {
 public:
  using Progress = std::function<void(uint64_t, uint64_t)>;
  RegionWriter(BlockDevice& dev, Progress progress, uint64_t total);

  template <class Fill>
  Status write_region(uint64_t start, uint64_t count, Fill fill) {
    for (uint64_t done = 0; done < count;) {
      uint64_t n = std::min(kChunk, count - done);
      IoRequest r;
      r.op = IoOp::kWrite;
      r.blocknr = start + done;
      for (uint64_t i = 0; i < n; i++) {
        uint8_t* p = bufs_[i]->data();
        std::memset(p, 0, kBlockSize);
        fill(p, start + done + i);
        r.add(p, kBlockSize);
      }
      IoRequest* rs[] = {&r};
      SFS_TRY(dev_.submit_and_wait(rs));
      done += n;
      written_ += n;
      if (progress_) progress_(written_, total_);
    }
    return Status::Ok();
  }

 private:
  static constexpr uint64_t kChunk = 64;
  BlockDevice& dev_;
  Progress progress_;
  uint64_t total_;
  uint64_t written_ = 0;
  std::unique_ptr<AlignedBlock> bufs_[kChunk];
};

// Stamps a metadata header of txid 0 (what mkfs writes) and seals it.
void seal_fresh_block(uint8_t* block, uint64_t blocknr, uint32_t magic);

// Writes, as sealed blocks that mark everything free, each metadata block
// that `to`'s marks cover and `from`'s do not, then flushes. The caller
// writes `to` to the superblocks afterwards.
Status initialise_above_marks(BlockDevice& dev, const Superblock& from, const Superblock& to);

}  // namespace stablefs
