// Reading a stablefs's two superblock copies the way a mount does: the
// primary if it is valid, else the backup, and what was wrong with either.
// For the tools that read or rewrite a superblock without mounting
// (stablefs-stat, stablefs-dump, stablefs-tune).
#pragma once

#include <string>

#include "core/base/format.h"
#include "core/base/result.h"
#include "core/io/block_device.h"

namespace stablefs {

struct SuperblockCopies {
  Superblock sb;  // the copy a mount would use
  bool primary_valid = false, backup_valid = false;
  std::string primary_problem, backup_problem;  // "" when valid
};

// EIO with *why when a copy cannot be read; EUCLEAN with *why when neither
// copy is valid ("not a stablefs image, or both superblocks are corrupt").
Result<SuperblockCopies> read_superblocks(BlockDevice& dev, std::string* why);

// The same for the image or device at `path`, opened read-only and without
// the exclusive lock, so it works while the filesystem is mounted (its
// label and UUID never change then). Open errors come back with *why
// naming the path.
Result<Superblock> read_superblock(const std::string& path, std::string* why);

}  // namespace stablefs
