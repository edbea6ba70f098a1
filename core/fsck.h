// Offline consistency check of an unmounted filesystem.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/base/result.h"
#include "core/io/block_device.h"

namespace stablefs {

struct FsckOptions {
  bool scrub = false;   // also verify every data block against its checksum
  bool repair = false;  // fix what can be fixed safely (not yet)
  bool read_only = false;  // -n: change nothing (no replay, no rewrites)
  std::function<void(const std::string&)> report;  // one line per problem
  std::function<void(uint64_t, uint64_t)> progress;
};

struct FsckResult {
  uint64_t errors = 0;          // problems found and left
  uint64_t inodes = 0;          // inodes in use
  uint64_t directories = 0;
  uint64_t data_blocks = 0;
  uint64_t blocks_scrubbed = 0;
  uint64_t checksum_mismatches = 0;
  uint64_t journal_transactions_replayed = 0;
  // The newest async commit, whose data had not all reached the disk, was
  // discarded by replay (0 or 1).
  uint64_t journal_transactions_discarded = 0;
};

// Replays the journal (as a mount would), then checks every structure.
// Returns an error only when the check itself could not run (I/O error,
// not a stablefs image); corruption is reported through FsckResult.
Result<FsckResult> check_filesystem(BlockDevice& dev, const FsckOptions& opts);

}  // namespace stablefs
