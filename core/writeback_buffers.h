// What one writeback batch needs — page list, I/O requests, reservations,
// bounce copies — allocated once at mount and leased per batch, so the
// writeback path never allocates its I/O resources (seed 003: writeback
// must make progress when no memory is free).
#pragma once

#include <condition_variable>
#include <mutex>
#include <vector>

#include "core/extent_map.h"
#include "core/io/block_device.h"
#include "core/page_cache.h"
#include "journal/buffer.h"

namespace stablefs {

constexpr size_t kWritebackBatchPages = 256;  // 1 MiB per batch

struct PendingPage {
  PageRef page;
  uint64_t phys = 0;
  uint64_t checksum = 0;
  const uint8_t* bytes = nullptr;  // the page, or its bounce copy
  // The mapping the page had before this writeback (old_phys 0: a hole),
  // to put back if the write fails.
  uint64_t old_phys = 0;
  bool old_unwritten = false;
};

// How far MountedFs::record_mapping got, so a failed write can take back
// exactly that.
struct RecordedMapping {
  size_t mapped_pages = 0;       // batch[0, mapped_pages) point at their new blocks
  bool reserved_committed = false;
  bool old_freed = false;
  uint64_t blocks_added = 0, blocks_removed = 0;  // applied to the inode's count
};

// Vectors are reserved to their worst case at construction; clear() keeps
// the capacity, so a batch never grows them.
struct WritebackBuffers {
  explicit WritebackBuffers(bool with_bounce) {
    batch.reserve(kWritebackBatchPages);
    rest.reserve(kWritebackBatchPages);
    reqs.reserve(kWritebackBatchPages);
    ptrs.reserve(kWritebackBatchPages);
    reserved.reserve(kWritebackBatchPages);
    replaced.reserve(2 * kWritebackBatchPages);
    if (with_bounce) bounce.resize(kWritebackBatchPages);
  }
  void clear() {
    batch.clear();
    rest.clear();
    reqs.clear();
    ptrs.clear();
    reserved.clear();
    replaced.clear();
  }
  std::vector<PendingPage> batch;
  std::vector<PendingPage> rest;  // what journal_rewrites leaves to the batch path
  std::vector<IoRequest> reqs;
  std::vector<IoRequest*> ptrs;
  std::vector<PhysRange> reserved;
  std::vector<PhysRange> replaced;
  std::vector<AlignedBlock> bounce;  // stable_pages=bounce only
};

// A fixed set of WritebackBuffers. More concurrent writebacks than buffers
// (the flusher plus fsync callers) wait for one to be returned.
class WritebackBufferPool {
 public:
  WritebackBufferPool(size_t count, bool with_bounce) {
    all_.reserve(count);
    free_.reserve(count);
    for (size_t i = 0; i < count; i++) all_.emplace_back(with_bounce);
    for (auto& b : all_) free_.push_back(&b);
  }

  class Lease {
   public:
    Lease(WritebackBufferPool& pool, WritebackBuffers* b) : pool_(pool), b_(b) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { pool_.release(b_); }
    WritebackBuffers& operator*() { return *b_; }
    WritebackBuffers* operator->() { return b_; }

   private:
    WritebackBufferPool& pool_;
    WritebackBuffers* b_;
  };

  Lease acquire() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return !free_.empty(); });
    WritebackBuffers* b = free_.back();
    free_.pop_back();
    return Lease(*this, b);
  }

 private:
  void release(WritebackBuffers* b) {
    b->clear();
    {
      std::lock_guard lk(mu_);
      free_.push_back(b);  // capacity reserved: never reallocates
    }
    cv_.notify_one();
  }

  std::vector<WritebackBuffers> all_;
  std::mutex mu_;  // protects free_; a leaf lock
  std::condition_variable cv_;
  std::vector<WritebackBuffers*> free_;
};

}  // namespace stablefs
