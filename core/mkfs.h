// Creating a new filesystem on a device.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "core/base/result.h"
#include "core/io/block_device.h"

namespace stablefs {

struct MkfsOptions {
  // Called with (done, total) while writing the metadata regions.
  std::function<void(uint64_t, uint64_t)> progress;
  // mkfs -L: at most kLabelMaxBytes (core/base/format.h), else EINVAL.
  std::string label;
  // mkfs -U; random when not given.
  std::optional<std::array<uint8_t, 16>> uuid;
};

// Writes superblocks, bitmaps, an empty inode table and checksum table, an
// empty journal and the root directory. Uses the whole device.
Status make_filesystem(BlockDevice& dev, const MkfsOptions& opts);

}  // namespace stablefs
