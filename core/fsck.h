// Offline consistency check of an unmounted filesystem.
//
// What it may write, only when !read_only: the two corrections a mount
// would make anyway (replaying the journal and persisting the new log tail
// in both superblocks; rewriting one superblock copy that is invalid from
// the other, valid one), and, when `repair` asks for them, the structural
// repairs of core/fsck_repair.h, made through the journal. What has no
// safe fix (a data block that fails its checksum, a corrupt metadata
// block, a block two inodes claim, a directory with two names) is
// reported and left: a checksum is never recomputed over bytes that fail
// it. With read_only nothing at all is written: the journal is replayed
// into memory (OverlayDevice), so the checks still see the filesystem a
// mount would see, and the corrections that were skipped are counted.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/base/result.h"
#include "core/io/block_device.h"

namespace stablefs {

// Which structural repairs to make (e2fsck's -p and -y).
enum class FsckRepair {
  kNone,   // report only
  kPreen,  // -p/-a: what is safe unattended: bitmaps against what is reachable,
           // checksum entries of leaked blocks, block counts, link counts,
           // '..' pointers, entry types, orphans of a clean filesystem
  kAll,    // -y/--repair: also drop directory entries that name free or
           // invalid inodes, and free inodes of an invalid type
};

struct FsckOptions {
  bool scrub = false;      // also verify every data block against its checksum
  bool read_only = false;  // -n: write nothing (replay into memory only)
  FsckRepair repair = FsckRepair::kNone;  // ignored with read_only
  // One line per inconsistency, per correction made or skipped, and per
  // note (a state that is not an error, such as orphans after a crash;
  // these lines start with "note: ").
  std::function<void(const std::string&)> report;
  std::function<void(uint64_t, uint64_t)> progress;
};

struct FsckResult {
  uint64_t errors = 0;               // inconsistencies found and left as they are
  uint64_t corrections = 0;          // written to the device: replay, superblock copy, repairs
  uint64_t repairs = 0;              // of corrections, the structural repairs
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
