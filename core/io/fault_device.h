// A BlockDevice test double that wraps another device and injects faults:
// EIO on chosen blocks, transient EAGAIN failures, torn writes, latency, and
// a pause hook that opens race windows deterministically. Crashes come from
// the wrapped device: a FaultDevice over a MemDevice gives both.
//
// Requests are forwarded one at a time, in batch order, so a flush in a
// batch stays a barrier. A faulted request is never forwarded (except the
// prefix of a torn write), and FaultDevice itself never retries: a transient
// fault is returned to the caller as EAGAIN with the backing store
// untouched, which is exactly the condition under which resubmitting the
// whole request is safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

#include "core/io/block_device.h"

namespace stablefs {

// Which operations a block fault applies to (a bit set).
enum class FaultOn : uint8_t { kRead = 1, kWrite = 2, kReadWrite = 3 };

class FaultDevice : public BlockDevice {
 public:
  // Called before each write is forwarded (after its faults are decided),
  // on the submitting thread with no FaultDevice lock held. A test can block
  // in it to hold a write "in flight". A torn write calls it once per piece
  // it forwards.
  using WriteHook = std::function<void(const IoRequest&)>;

  explicit FaultDevice(BlockDevice& inner);
  explicit FaultDevice(std::unique_ptr<BlockDevice> inner);
  ~FaultDevice() override;
  FaultDevice(const FaultDevice&) = delete;
  FaultDevice& operator=(const FaultDevice&) = delete;

  uint64_t block_count() const override { return inner_.block_count(); }
  uint32_t sector_size() const override { return inner_.sector_size(); }
  Status submit_and_wait(std::span<IoRequest*> requests) override;
  bool has_native_fua() const override { return inner_.has_native_fua(); }
  bool can_discard() const override { return inner_.can_discard(); }

  // Every request touching blocknr (of the given kind) fails with EIO until
  // heal_block or clear_faults.
  void fail_block(uint64_t blocknr, FaultOn on);
  void heal_block(uint64_t blocknr);
  // The next `times` requests of the given kind touching blocknr fail with
  // EAGAIN; later ones go through.
  void fail_transiently(uint64_t blocknr, FaultOn on, int times);
  // The next write touching blocknr is torn: only its first keep_bytes reach
  // the device (a partial block is merged into the block's old contents, as
  // a torn sector write would leave it), and the write fails with EIO.
  void tear_next_write(uint64_t blocknr, size_t keep_bytes);
  // Added to every request before it is handled.
  void set_latency(std::chrono::microseconds per_request);
  void set_before_write(WriteHook hook);
  void clear_faults();

  // Requests seen, by kind, including the ones that failed.
  uint64_t reads() const { return reads_.load(); }
  uint64_t writes() const { return writes_.load(); }
  uint64_t flushes() const { return flushes_.load(); }
  // Requests that failed because of an injected fault.
  uint64_t injected_faults() const { return injected_.load(); }

 private:
  struct Transient {
    FaultOn on;
    int remaining;
  };
  enum class Verdict { kForward, kFailEio, kFailAgain, kTear };

  Verdict decide(const IoRequest& r, size_t* keep_bytes);
  void wait_latency();
  int forward(IoRequest& r);
  int torn_write(const IoRequest& r, size_t keep_bytes);

  std::unique_ptr<BlockDevice> owned_;
  BlockDevice& inner_;

  // Protects the fault tables, latency_, before_write_ and closing_. A leaf
  // lock: never held while calling the wrapped device or a hook.
  std::mutex mu_;
  std::condition_variable closing_cv_;  // ends injected latency at destruction
  bool closing_ = false;
  std::map<uint64_t, FaultOn> bad_blocks_;
  std::map<uint64_t, Transient> transient_;
  std::map<uint64_t, size_t> tears_;  // blocknr -> bytes kept
  std::chrono::microseconds latency_{0};
  std::shared_ptr<const WriteHook> before_write_;

  std::atomic<uint64_t> reads_{0}, writes_{0}, flushes_{0}, injected_{0};
};

}  // namespace stablefs
