// Offline consistency check of an unmounted filesystem.
//
// What it may write: only the two corrections a mount would make anyway,
// and only when !read_only: replaying the journal (and persisting the new
// log tail in both superblocks), and rewriting one superblock copy that is
// invalid from the other, valid one. Nothing else is ever repaired; every
// other inconsistency is reported and left. With read_only nothing at all
// is written: the journal is replayed into memory (OverlayDevice), so the
// checks still see the filesystem a mount would see, and the corrections
// that were skipped are counted.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/base/result.h"
#include "core/io/block_device.h"

namespace stablefs {

struct FsckOptions {
  bool scrub = false;      // also verify every data block against its checksum
  bool read_only = false;  // -n: write nothing (replay into memory only)
  // One line per inconsistency, per correction made or skipped, and per
  // note (a state that is not an error, such as orphans after a crash;
  // these lines start with "note: ").
  std::function<void(const std::string&)> report;
  std::function<void(uint64_t, uint64_t)> progress;
};

struct FsckResult {
  uint64_t errors = 0;               // inconsistencies found, all left as they are
  uint64_t corrections = 0;          // written to the device: replay, superblock copy
  uint64_t corrections_skipped = 0;  // the same, not written because of read_only
  uint64_t inodes = 0;               // inodes in use
  uint64_t directories = 0;
  uint64_t data_blocks = 0;
  uint64_t orphans = 0;  // link count 0, in no directory: freed by the next rw mount
  uint64_t blocks_scrubbed = 0;
  uint64_t checksum_mismatches = 0;
  // Replayed onto the device, or (read_only) into memory only.
  uint64_t journal_transactions_replayed = 0;
  // The newest async commit, whose data had not all reached the disk, was
  // discarded by replay (0 or 1).
  uint64_t journal_transactions_discarded = 0;
};

// Replays the journal (onto the device, or into memory with read_only),
// then checks every structure. Returns an error only when the check itself
// could not run (I/O error, not a stablefs image); corruption is reported
// through FsckResult.
Result<FsckResult> check_filesystem(BlockDevice& dev, const FsckOptions& opts);

}  // namespace stablefs
