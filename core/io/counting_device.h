// A BlockDevice that counts the requests its device failed, for the
// mount's counters (stablefs-stat's device_read_errors and
// device_write_errors): every failed read, data or metadata, and every
// failed write, flush or discard, after the device's own retries. EINVAL
// (a malformed request) is a bug of the caller, not of the device, and is
// not counted. It also counts flushes and the time spent in them
// (device_flushes, device_flush_ns_total): the part of an fsync that the
// backing store, not stablefs, decides.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>

#include "core/io/block_device.h"

namespace stablefs {

class CountingDevice : public BlockDevice {
 public:
  explicit CountingDevice(std::unique_ptr<BlockDevice> d) : d_(std::move(d)) {}
  uint64_t block_count() const override { return d_->block_count(); }
  uint32_t sector_size() const override { return d_->sector_size(); }
  Status submit_and_wait(std::span<IoRequest*> reqs) override {
    // Flushes run alone (BlockDevice::flush); a flush inside a batch of
    // other requests is counted but not timed.
    const auto flushes = uint64_t(std::count_if(
        reqs.begin(), reqs.end(), [](const IoRequest* r) { return r->op == IoOp::kFlush; }));
    const bool flush_only = flushes != 0 && flushes == reqs.size();
    const auto t0 = flush_only ? Clock::now() : Clock::time_point{};
    Status s = d_->submit_and_wait(reqs);
    if (flushes) flushes_.fetch_add(flushes, std::memory_order_relaxed);
    if (flush_only)
      flush_ns_.fetch_add(
          uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()),
          std::memory_order_relaxed);
    if (!s.ok()) {
      for (const IoRequest* r : reqs) {
        if (r->result == 0 || r->result == EINVAL) continue;
        (r->op == IoOp::kRead ? read_errors_ : write_errors_).fetch_add(1, std::memory_order_relaxed);
      }
    }
    return s;
  }
  bool has_native_fua() const override { return d_->has_native_fua(); }
  bool can_discard() const override { return d_->can_discard(); }
  uint64_t transient_retries() const override { return d_->transient_retries(); }

  uint64_t read_errors() const { return read_errors_.load(std::memory_order_relaxed); }
  uint64_t write_errors() const { return write_errors_.load(std::memory_order_relaxed); }
  uint64_t flushes() const { return flushes_.load(std::memory_order_relaxed); }
  uint64_t flush_ns() const { return flush_ns_.load(std::memory_order_relaxed); }

 private:
  using Clock = std::chrono::steady_clock;
  std::unique_ptr<BlockDevice> d_;
  std::atomic<uint64_t> flushes_{0};
  std::atomic<uint64_t> flush_ns_{0};
  std::atomic<uint64_t> read_errors_{0};
  std::atomic<uint64_t> write_errors_{0};
};

}  // namespace stablefs
