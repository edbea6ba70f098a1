// stablefs-dump's views of an image, each one Record (text or JSON):
// the filesystem (superblocks, geometry, journal), one inode, one
// directory's entries, one file's extents with every block's checksums.
#pragma once

#include <cstdint>
#include <string>

#include "core/base/result.h"
#include "tools/dump/image_reader.h"
#include "tools/dump/record.h"

namespace stablefs {

Record describe_filesystem(const ImageReader& r);
// Errors (a free or out-of-range inode, a corrupt structure) come back
// with *why set to one line.
Result<Record> describe_inode(ImageReader& r, uint64_t ino, std::string* why);
Result<Record> describe_directory(ImageReader& r, uint64_t ino, std::string* why);
// Reads every mapped block to compare its checksum with the recorded one.
Result<Record> describe_extents(ImageReader& r, uint64_t ino, std::string* why);

}  // namespace stablefs
