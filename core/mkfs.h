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
  // Lazy initialisation (core/lazy_init.h): write only the metadata under
  // the high-water marks. false writes all of it, as images made before
  // the feature were (mkfs -E lazy_init=0; tests of old images).
  bool lazy_init = true;
  // Where the marks start, 0 for the defaults (kLazyInodeStep inodes,
  // kLazyBlockStep data blocks). Tests set them low to make the engine
  // raise them.
  uint64_t initial_inodes = 0;
  uint64_t initial_data_blocks = 0;
};

// Writes superblocks, bitmaps, an empty inode table and checksum table (or,
// with lazy_init, their starts), an empty journal and the root directory.
// Uses the whole device.
Status make_filesystem(BlockDevice& dev, const MkfsOptions& opts);

}  // namespace stablefs
