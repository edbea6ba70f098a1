// Delta records: a metadata block logged as the bytes that changed since
// its previous logged version, instead of all 4096 (journal/FORMAT.md,
// "Deltas"). A checksum table block rewritten for one 8-byte entry costs
// 36 bytes of log this way, not a block.
//
// Delta block (magic kMagicJournalDelta, "JDLT"), sealed like every journal
// record with its own log block number:
//   payload 0 u32 count | 4 u32 zero | count entries, packed:
//     u64 home | u64 checksum | u16 ranges | u16 zero | u32 zero
//     ranges x (u16 offset | u16 length | length bytes)
// `checksum` is the header checksum of the block's new version, sealed with
// (home, txid of the transaction): applying the ranges to the previous
// version and sealing it must reproduce it, or replay refuses the log.
// Offsets and lengths are multiples of 8; the header's txid and checksum
// fields are never in a range (sealing sets them).
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "journal/buffer.h"

namespace stablefs {

constexpr uint32_t kDeltaEntryHeader = 24;
constexpr uint32_t kDeltaRangeHeader = 4;
// Above this an entry is not worth it: the block is logged whole.
constexpr uint32_t kMaxDeltaEntry = 1024;

// One decoded entry. `ranges` is the packed (offset, length, bytes) list.
struct DeltaEntry {
  uint64_t home = 0;
  uint64_t checksum = 0;
  uint64_t txid = 0;  // of the transaction that logged it (set by the scan)
  uint16_t range_count = 0;
  std::vector<uint8_t> ranges;
};

// Packs entries into delta blocks as a transaction is laid out. The blocks
// carry magic and payload; write_transaction seals each at its log position.
class DeltaWriter {
 public:
  // Adds the change base -> next of block `home` (next already sealed).
  // False, adding nothing, when the change is too large to be worth a
  // delta: log the block whole.
  bool add(uint64_t home, const uint8_t* base, const uint8_t* next);
  std::deque<AlignedBlock>& blocks() { return blocks_; }
  uint64_t entries() const { return entries_; }

 private:
  std::deque<AlignedBlock> blocks_;  // stable addresses for the write list
  uint32_t used_ = 0;                // payload bytes of the last block
  uint64_t entries_ = 0;
};

// Reads a header-verified delta block. Rejects counts, lengths and offsets
// that do not fit (nothing from the disk is trusted).
bool decode_delta_block(const uint8_t* block, std::vector<DeltaEntry>* out, std::string* why);

// Applies `e` to the previous version in `block` and seals the result with
// (e.home, e.txid). False when the result's checksum is not e.checksum.
bool apply_delta(uint8_t* block, const DeltaEntry& e);

}  // namespace stablefs
