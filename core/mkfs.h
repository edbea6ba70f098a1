// Creating a new filesystem on a device.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "core/base/format.h"
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

// mkfs --preallocate: writes zeros over every data block (free space, whose
// contents nothing reads) and flushes, so that an image file holds all of
// its blocks on the host. A sparse image makes the host filesystem allocate
// on the first write of each block, and the fdatasync that ends a commit
// then also waits for the host's own journal commit of that allocation.
// Writing unallocated space once up front moves that cost out of fsync.
// (fallocate would not: the host marks the space unwritten and converts it
// on first write, which is again a metadata change.) progress gets (blocks
// written, total) as it goes.
Status preallocate_data(BlockDevice& dev, const Superblock& sb,
                        const std::function<void(uint64_t, uint64_t)>& progress);

}  // namespace stablefs
