// Creating a new filesystem on a device.
#pragma once

#include <functional>

#include "core/base/result.h"
#include "core/io/block_device.h"

namespace stablefs {

struct MkfsOptions {
  // Called with (done, total) while writing the metadata regions.
  std::function<void(uint64_t, uint64_t)> progress;
};

// Writes superblocks, bitmaps, an empty inode table and checksum table, an
// empty journal and the root directory. Uses the whole device.
Status make_filesystem(BlockDevice& dev, const MkfsOptions& opts);

}  // namespace stablefs
