// A BlockDevice that never writes to the device beneath it. Writes land in
// an in-memory map of blocks; reads are served from that map where it
// holds the block and from the wrapped device elsewhere; a flush does
// nothing. `fsck.stablefs -n` replays the journal into one, so every check
// sees the replayed filesystem while the image stays byte for byte as it
// was. A read-only mount replays into one that owns the image's device
// (core/mount_fs.cc).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/io/block_device.h"

namespace stablefs {

class OverlayDevice : public BlockDevice {
 public:
  // `base` must outlive this device; it only ever sees reads.
  explicit OverlayDevice(BlockDevice& base) : base_(base) {}
  // The same over a device it owns.
  explicit OverlayDevice(std::unique_ptr<BlockDevice> base)
      : owned_base_(std::move(base)), base_(*owned_base_) {}

  uint64_t block_count() const override { return base_.block_count(); }
  uint32_t sector_size() const override { return base_.sector_size(); }
  uint64_t transient_retries() const override { return base_.transient_retries(); }
  // Reads go to the base device in one batch, then the blocks the overlay
  // holds are copied over them. A write is validated as the base would
  // (whole aligned blocks, inside the device) and kept in memory.
  Status submit_and_wait(std::span<IoRequest*> requests) override;

  // Distinct blocks written so far (what the base would have received).
  size_t blocks_held() const;

 private:
  std::unique_ptr<BlockDevice> owned_base_;  // null when base_ is borrowed
  BlockDevice& base_;
  mutable std::mutex mu_;  // protects blocks_; leaf lock
  std::unordered_map<uint64_t, std::vector<uint8_t>> blocks_;
};

}  // namespace stablefs
