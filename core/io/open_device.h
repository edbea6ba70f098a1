// Opening the backing store: an image file or a block device.
#pragma once

#include <memory>
#include <string>

#include "core/base/result.h"
#include "core/io/block_device.h"

namespace stablefs {

struct OpenOptions {
  bool read_only = false;
  bool create = false;            // create the image file if missing (mkfs)
  uint64_t create_size = 0;       // size in bytes for a new image
  bool exclusive = true;          // O_EXCL on block devices / flock on images
};

// Opens path with io_uring. Image files use O_DIRECT when the host
// filesystem allows it; block devices get their size from BLKGETSIZE64 and
// sector size from BLKSSZGET. Errors: ENOENT, EACCES, ENOTBLK (neither a
// regular file nor a block device), EBUSY (in use by another stablefs).
Result<std::unique_ptr<BlockDevice>> open_device(const std::string& path,
                                                 const OpenOptions& opts);

}  // namespace stablefs
