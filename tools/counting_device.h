// A BlockDevice that passes every request to another one and counts the
// bytes read and written, so a tool can show MiB/s of real device I/O
// (fsck --scrub reads data blocks the progress fraction knows nothing of).
#pragma once

#include <atomic>
#include <cstdint>

#include "core/io/block_device.h"

namespace stablefs {

class CountingDevice : public BlockDevice {
 public:
  // `base` must outlive this device.
  explicit CountingDevice(BlockDevice& base) : base_(base) {}

  uint64_t block_count() const override { return base_.block_count(); }
  uint32_t sector_size() const override { return base_.sector_size(); }
  Status submit_and_wait(std::span<IoRequest*> requests) override {
    uint64_t n = 0;
    for (const IoRequest* r : requests)
      if (r->op != IoOp::kFlush) n += r->bytes();
    Status s = base_.submit_and_wait(requests);
    // Counted after the I/O, failed requests too: the rate is what the
    // device was asked to move.
    bytes_.fetch_add(n, std::memory_order_relaxed);
    return s;
  }

  bool has_native_fua() const override { return base_.has_native_fua(); }
  bool can_discard() const override { return base_.can_discard(); }

  uint64_t bytes_transferred() const { return bytes_.load(std::memory_order_relaxed); }

 private:
  BlockDevice& base_;
  std::atomic<uint64_t> bytes_{0};
};

}  // namespace stablefs
