// A BlockDevice that forwards to one it does not own: lets Filesystem::mount
// (which takes ownership of its device) run on a device the caller keeps
// using afterwards, as tests and fsck-after-mount checks do.
#pragma once

#include "core/io/block_device.h"

namespace stablefs {

class BorrowedDevice : public BlockDevice {
 public:
  explicit BorrowedDevice(BlockDevice& d) : d_(d) {}
  uint64_t block_count() const override { return d_.block_count(); }
  uint32_t sector_size() const override { return d_.sector_size(); }
  Status submit_and_wait(std::span<IoRequest*> r) override { return d_.submit_and_wait(r); }
  bool has_native_fua() const override { return d_.has_native_fua(); }
  bool can_discard() const override { return d_.can_discard(); }
  uint64_t transient_retries() const override { return d_.transient_retries(); }

 private:
  BlockDevice& d_;
};

}  // namespace stablefs
