// An in-memory BlockDevice with a volatile write cache, for tests.
// Writes land in a cache that only flush() makes durable (or a FUA write,
// which is durable at once); crash() throws away everything not yet
// flushed, as a power cut would.
#pragma once

#include <map>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "core/io/block_device.h"

namespace stablefs {

class MemDevice : public BlockDevice {
 public:
  // native_fua: has_native_fua() answers true, so the journal takes its
  // FUA paths (FUA writes are honoured either way).
  explicit MemDevice(uint64_t blocks, bool native_fua = false);

  uint64_t block_count() const override { return blocks_; }
  uint32_t sector_size() const override { return 512; }
  Status submit_and_wait(std::span<IoRequest*> requests) override;
  bool has_native_fua() const override { return native_fua_; }
  // A discard zeroes the blocks at once, cached and durable: the most
  // a store may do with one.
  bool can_discard() const override { return true; }

  // Drops every write not made durable by a flush.
  void crash();
  // Durable contents of one block (after a crash, what a remount sees).
  std::vector<uint8_t> durable_block(uint64_t blocknr) const;
  // Direct access for corruption tests: modifies durable and cached bytes.
  void poke(uint64_t blocknr, size_t offset, uint8_t value);
  uint64_t flush_count() const;
  uint64_t write_count() const;
  uint64_t fua_write_count() const;
  uint64_t discarded_blocks() const;

 private:
  uint64_t blocks_;
  const bool native_fua_;
  mutable std::mutex mu_;  // protects everything below
  std::vector<uint8_t> durable_;
  std::map<uint64_t, std::vector<uint8_t>> volatile_;  // blocknr -> bytes
  uint64_t flushes_ = 0;
  uint64_t writes_ = 0;
  uint64_t fua_writes_ = 0;
  uint64_t discarded_ = 0;
};

// A MemDevice that outlives every mount of it (mount takes ownership of a
// forwarding wrapper, not of the device). cut() simulates the power going
// out for that mount: from then on its I/O fails and reaches nothing.
class SharedDevice : public BlockDevice {
 public:
  // The geometry is copied: a crashed mount's threads outlive the test
  // (and its MemDevice) and may still ask, but never reach d_ after cut().
  explicit SharedDevice(MemDevice& d)
      : d_(d), blocks_(d.block_count()), sector_(d.sector_size()), native_fua_(d.has_native_fua()) {}
  uint64_t block_count() const override { return blocks_; }
  uint32_t sector_size() const override { return sector_; }
  Status submit_and_wait(std::span<IoRequest*> r) override {
    std::shared_lock lk(mu_);
    if (dead_) return err(EIO);
    return d_.submit_and_wait(r);
  }
  bool has_native_fua() const override { return native_fua_; }
  bool can_discard() const override { return true; }
  void cut() {
    std::unique_lock lk(mu_);
    dead_ = true;
  }

 private:
  MemDevice& d_;
  const uint64_t blocks_;
  const uint32_t sector_;
  const bool native_fua_;
  std::shared_mutex mu_;  // in-flight I/O holds it shared; cut() exclusive
  bool dead_ = false;
};

}  // namespace stablefs
