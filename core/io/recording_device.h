// A BlockDevice wrapper that records every write and flush, in the order
// the wrapped device executed them, for crash simulation in the spirit of
// dm-log-writes: a replayer applies a prefix of the log (minus some
// unflushed writes) to the initial image to build what a power cut at that
// point could leave behind.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "core/io/block_device.h"

namespace stablefs {

struct RecordedIo {
  // kWrite or kFlush (reads are not recorded). A discard is logged as a
  // write of zeroes, the most a store may do with it: durable or not, like
  // any other write, so a crash image can hold it too early if it was sent
  // too early.
  IoOp op = IoOp::kWrite;
  uint64_t blocknr = 0;        // first block of a write
  std::vector<uint8_t> bytes;  // a write's bytes, a multiple of kBlockSize
  bool fua = false;            // a FUA write: durable once its batch completed
  bool discard = false;        // a discard, logged as this write of zeroes
  // Entries with one batch number came from one submit_and_wait: they
  // completed in any order, and all of them before any later batch began.
  uint64_t batch = 0;
};

// The log itself, shared between the device (which appends) and the test
// (which reads it while, and after, the filesystem owns the device).
class WriteLog {
 public:
  // Number of entries so far: a position in the log. Everything the device
  // executed before this call is below it.
  size_t size() const;
  std::vector<RecordedIo> snapshot() const;

 private:
  friend class RecordingDevice;
  mutable std::mutex mu_;  // protects entries_; leaf lock
  std::vector<RecordedIo> entries_;
  uint64_t batches_ = 0;
};

class RecordingDevice : public BlockDevice {
 public:
  // `target` must outlive this device.
  RecordingDevice(BlockDevice& target, std::shared_ptr<WriteLog> log);

  uint64_t block_count() const override { return target_.block_count(); }
  uint32_t sector_size() const override { return target_.sector_size(); }
  // Forwards the batch and logs its successful writes and flushes. Batches
  // are serialised so the log order is the order the target executed them
  // in: a flush in the log covers exactly the writes logged before it.
  Status submit_and_wait(std::span<IoRequest*> requests) override;
  bool has_native_fua() const override { return target_.has_native_fua(); }
  bool can_discard() const override { return target_.can_discard(); }

  const std::shared_ptr<WriteLog>& log() const { return log_; }

 private:
  BlockDevice& target_;
  std::shared_ptr<WriteLog> log_;
  std::mutex order_mu_;  // serialises batches (outermost; then WriteLog::mu_)
};

}  // namespace stablefs
