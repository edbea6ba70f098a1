// Building the images a power cut could leave, from the image the workload
// started on plus its write log (core/io/recording_device.h).
//
// A crash point is a log position x: the device saw log entries [0, x).
// Everything before the last flush below x is durable. Writes after that
// flush sat in the volatile cache: a "clean" point applies all of them, a
// "torn" point applies a random subset, block by block, in log order, and
// may tear one of the kept blocks (only its first sectors reach the media).
// A FUA write whose batch completed below x is durable like a flushed one:
// always applied whole. One whose batch was still in flight at x (x falls
// inside the batch) is as unflushed as any other write.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/io/recording_device.h"

namespace stablefs::crash {

struct CrashPoint {
  size_t pos = 0;       // the crash comes before log entry `pos`
  bool drop = false;    // drop a random subset of the unflushed writes
  uint64_t seed = 0;    // for the subset and the tear
  std::string describe() const;
};

// The log position below which a crash at `p` leaves every write durable.
size_t durable_position(const std::vector<RecordedIo>& log, const CrashPoint& p);
// Sorts points into the order CrashImageBuilder::build needs.
void order_for_building(const std::vector<RecordedIo>& log, std::vector<CrashPoint>& points);

// Every flush boundary (the position just after each flush, and just after
// each batch that holds a FUA write), plus 0 and the end of the log.
std::vector<CrashPoint> flush_boundaries(const std::vector<RecordedIo>& log);
// `n` points strictly between flushes, with unflushed writes dropped/torn.
std::vector<CrashPoint> sampled_torn_points(const std::vector<RecordedIo>& log, size_t n,
                                            uint64_t seed);

// A crash image: the builder's base image with the unflushed tail (and
// anything written later, by a mount or fsck) in a private overlay, so
// building one costs the tail, not a copy of the device. Writes are durable
// at once; nothing here is crashed again. Valid until the builder builds
// an image at a later durable position.
class CrashImage : public BlockDevice {
 public:
  explicit CrashImage(const std::vector<uint8_t>& base) : base_(base) {}
  uint64_t block_count() const override;
  uint32_t sector_size() const override { return 512; }
  Status submit_and_wait(std::span<IoRequest*> requests) override;
  std::vector<uint8_t> block(uint64_t blocknr) const;

 private:
  friend class CrashImageBuilder;
  const std::vector<uint8_t>& base_;
  mutable std::mutex mu_;  // protects overlay_; leaf lock
  std::unordered_map<uint64_t, std::vector<uint8_t>> overlay_;
};

class CrashImageBuilder {
 public:
  CrashImageBuilder(std::vector<uint8_t> initial, const std::vector<RecordedIo>& log);

  // A fresh device holding the image a crash at `p` leaves. Points must be
  // asked for in nondecreasing durable_position() (the builder rolls one
  // base image forward).
  std::unique_ptr<CrashImage> build(const CrashPoint& p);

 private:
  void advance_base(size_t upto);  // apply every write in [base_pos_, upto)

  std::vector<uint8_t> base_;  // image with every write before base_pos_
  const std::vector<RecordedIo>& log_;
  size_t base_pos_ = 0;
};

}  // namespace stablefs::crash
