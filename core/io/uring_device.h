// The backing store driven through io_uring.
//
// Every read, write and flush reaches the file or block device as an
// io_uring operation (READV/WRITEV/FSYNC with IORING_FSYNC_DATASYNC); the
// device never falls back to pread/pwrite. One request is one SQE, so all of
// its segments travel as a unit, and a transient failure (EAGAIN, EINTR, a
// short transfer) resubmits the whole request at the same offset. Positional
// I/O makes that idempotent: no segment is lost, duplicated or misplaced.
//
// Concurrency: a fixed pool of rings is created at open time. A caller of
// submit_and_wait leases one ring for the duration of its batch (waiting on a
// condition variable while all are busy), submits, reaps its own completions
// and returns the ring. Nothing on this path allocates, so the writeback path
// can always make progress.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>

#include "core/base/unique_fd.h"
#include "core/io/block_device.h"

namespace stablefs {

class UringDevice : public BlockDevice {
 public:
  static constexpr int kRingCount = 4;
  // SQ entries per ring, and the most requests one ring keeps in flight; the
  // CQ is twice as deep, so it can never overflow.
  static constexpr unsigned kRingDepth = 128;
  // A request is attempted at most 1 + kMaxRetries times, then fails EIO.
  static constexpr int kMaxRetries = 8;

  // Test hook: sees every completion and returns the result to act on
  // (e.g. -EAGAIN or a shortened byte count), so tests drive the real retry
  // path. Called on the submitting thread, with no device lock held.
  using CompletionHook = std::function<int(const IoRequest&, int res)>;

  struct Config {
    uint64_t block_count = 0;
    uint32_t sector_size = 512;
    bool read_only = false;
    bool direct_io = false;  // informational: fd was opened with O_DIRECT
    // Held as long as the device lives: the lock on a loop device's backing
    // file (core/io/open_device.cc).
    std::shared_ptr<const UniqueFd> companion_lock;
  };

  // Takes ownership of fd: it is closed when the device is destroyed, and
  // also when create fails.
  static Result<std::unique_ptr<UringDevice>> create(int fd, const Config& cfg);
 private:
  struct Key {};  // only create() can construct: a device exists once its rings do
 public:
  UringDevice(Key, int fd, const Config& cfg);
  ~UringDevice() override;
  UringDevice(const UringDevice&) = delete;
  UringDevice& operator=(const UringDevice&) = delete;

  uint64_t block_count() const override { return cfg_.block_count; }
  uint32_t sector_size() const override { return cfg_.sector_size; }
  // Requests are validated first (EINVAL for misaligned buffers, a length
  // that is not whole blocks, or a range outside the device; EROFS for a
  // write to a read-only device); invalid ones are not submitted. The rest
  // are submitted together, split at flushes: a flush starts only after
  // every earlier request of the batch completed, and later requests start
  // only after the flush completed.
  Status submit_and_wait(std::span<IoRequest*> requests) override;
  // Discards punch holes (fallocate PUNCH_HOLE | KEEP_SIZE).
  bool can_discard() const override { return !cfg_.read_only; }

  void set_completion_hook(CompletionHook hook);
  bool direct_io() const { return cfg_.direct_io; }
  // Total whole-request resubmissions so far (for tests and statistics).
  uint64_t retry_count() const { return retries_.load(std::memory_order_relaxed); }
  uint64_t transient_retries() const override { return retry_count(); }

 private:
  struct Ring;
  class RingLease;

  Ring* acquire_ring();
  void release_ring(Ring* ring);
  // Runs requests with no flush among them (or one lone flush) to
  // completion on the leased ring.
  void run_group(Ring& ring, std::span<IoRequest*> requests, const CompletionHook* hook);

  int fd_;
  Config cfg_;
  std::unique_ptr<Ring[]> rings_;

  // Protects free_rings_/free_count_. A leaf lock: nothing else is taken
  // while it is held, and it is never held across I/O.
  std::mutex pool_mu_;
  std::condition_variable pool_cv_;
  std::array<Ring*, kRingCount> free_rings_{};
  int free_count_ = 0;

  // Protects hook_ (the pointer, not the callee). Leaf lock. Callers copy
  // the shared_ptr once per batch, so setting a hook never races a batch.
  std::mutex hook_mu_;
  std::shared_ptr<const CompletionHook> hook_;

  std::atomic<uint64_t> retries_{0};
};

}  // namespace stablefs
