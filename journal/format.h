// The journal's on-disk record layouts, shared by the commit writer
// (journal.cc) and replay (replay.cc). Prose: journal/FORMAT.md.
//
// Every log block is a metadata block: its first 64 bytes are the common
// header of core/base/format.h (magic, blocknr, txid, owner, checksum).
// Journal records (descriptor, revoke, commit) are sealed with their own
// absolute block number in the log; metadata copies keep their HOME block
// number, so a copy verifies exactly as it will once checkpointed.
//
// The exception is a journaled file data block, which is logged raw (its
// bytes are the file's) after a data-blocks record that names its home
// and the checksum it must have: that checksum identifies it instead.
//
// One transaction, at consecutive log offsets (modulo the log length):
//   { descriptor, copy x count }*  revoke*  data-tags*
//   { data-blocks, data block x count }*  commit
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/base/checksum.h"
#include "core/base/endian.h"
#include "core/base/format.h"

namespace stablefs {

// ---- Descriptor (magic kMagicJournalDescriptor) and revoke (magic
// kMagicJournalRevoke) blocks share one payload layout: a list of home
// block numbers.
// payload 0 u32 count | 4 u32 zero | 8.. count x u64 home blocknr | zero
// A descriptor's `count` copies follow it immediately, in list order.
constexpr uint32_t kJournalListHeader = 8;
constexpr uint32_t kJournalListCapacity = (kMetaPayload - kJournalListHeader) / 8;  // 503

// ---- Data tag block (magic kMagicJournalDataTags) ----
// payload 0 u32 count | 4 u32 zero | 8.. count x (u64 blocknr, u64 checksum)
// The data blocks an async-committed transaction refers to, with the
// checksums it records for them. Only async transactions carry them.
constexpr uint32_t kDataTagSize = 16;
constexpr uint32_t kDataTagCapacity = (kMetaPayload - kJournalListHeader) / kDataTagSize;  // 251
struct DataTag {
  uint64_t blocknr = 0;
  uint64_t checksum = 0;
};

// ---- Data blocks record (magic kMagicJournalDataBlocks) ----
// The data tag layout: count x (u64 home blocknr, u64 checksum). The
// record's `count` raw file data blocks follow it immediately, in list
// order; block i must have block_checksum(home_i) == checksum_i, which is
// also what the checksum table records for it from this transaction on.

// ---- Commit block (magic kMagicJournalCommit) ----
// payload 0 u64 txid | 8 u64 log_blocks | 16 u64 txn_hash | 24 u32 flags | zero
// log_blocks: blocks of the transaction before the commit block.
// txn_hash: chained XXH3 over those blocks in log order (txn_hash_step).
// flags: kCommitAsync, or 0 (the log and data were flushed before the
// commit block was written: version 1 logs have 0 here).
constexpr uint32_t kCommitAsync = 1u << 0;
struct CommitRecord {
  uint64_t txid = 0;
  uint64_t log_blocks = 0;
  uint64_t txn_hash = 0;
  uint32_t flags = 0;
};

// The whole-transaction hash: h0 = txid, h(i+1) = XXH3(block i, seed h(i)).
// Seeding with the txid ties the hash to its transaction, so a stale commit
// block from an earlier use of the log never validates a new transaction.
inline uint64_t txn_hash_init(uint64_t txid) { return txid; }
inline uint64_t txn_hash_step(uint64_t h, const uint8_t* block) {
  return xxh3(block, kBlockSize, h);
}

// Log blocks needed by a transaction with `bufs` metadata copies and
// `revokes` revoked blocks (descriptors + copies + revoke blocks + commit).
inline uint64_t txn_log_blocks(uint64_t bufs, uint64_t revokes) {
  auto lists = [](uint64_t n) { return (n + kJournalListCapacity - 1) / kJournalListCapacity; };
  return lists(bufs) + bufs + lists(revokes) + 1;
}

// Fills a descriptor or revoke block (n <= kJournalListCapacity) and seals
// it for absolute log block `log_blocknr`.
inline void encode_journal_list(uint8_t* block, uint32_t magic, uint64_t log_blocknr,
                                uint64_t txid, const uint64_t* homes, uint32_t n) {
  MetaHeader h;
  h.magic = magic;
  encode_meta_header(block, h);
  Encoder e(block + kMetaHeaderSize, kMetaPayload);
  e.u32(n);
  e.u32(0);
  for (uint32_t i = 0; i < n; i++) e.u64(homes[i]);
  e.skip(kMetaPayload - e.pos());
  seal_meta_block(block, log_blocknr, txid);
}

// Reads the list of a header-verified descriptor or revoke block. Rejects
// a count that does not fit the block.
inline bool decode_journal_list(const uint8_t* block, std::vector<uint64_t>* homes,
                                std::string* why) {
  Decoder d(block + kMetaHeaderSize, kMetaPayload);
  uint32_t n = d.u32();
  d.u32();
  if (n == 0 || n > kJournalListCapacity) {
    *why = "list count " + std::to_string(n) + " out of range";
    return false;
  }
  homes->clear();
  for (uint32_t i = 0; i < n; i++) homes->push_back(d.u64());
  return !d.overflow();
}

// Log blocks for `tags` data tags.
inline uint64_t data_tag_blocks(uint64_t tags) {
  return (tags + kDataTagCapacity - 1) / kDataTagCapacity;
}

// Log blocks for `n` journaled data blocks: records plus the blocks.
inline uint64_t journaled_data_blocks(uint64_t n) { return data_tag_blocks(n) + n; }

// Fills a data tag block, or with kMagicJournalDataBlocks a data blocks
// record (n <= kDataTagCapacity), and seals it for absolute log block
// `log_blocknr`.
inline void encode_data_tags(uint8_t* block, uint64_t log_blocknr, uint64_t txid,
                             const DataTag* tags, uint32_t n,
                             uint32_t magic = kMagicJournalDataTags) {
  MetaHeader h;
  h.magic = magic;
  encode_meta_header(block, h);
  Encoder e(block + kMetaHeaderSize, kMetaPayload);
  e.u32(n);
  e.u32(0);
  for (uint32_t i = 0; i < n; i++) {
    e.u64(tags[i].blocknr);
    e.u64(tags[i].checksum);
  }
  e.skip(kMetaPayload - e.pos());
  seal_meta_block(block, log_blocknr, txid);
}

inline bool decode_data_tags(const uint8_t* block, std::vector<DataTag>* tags, std::string* why) {
  Decoder d(block + kMetaHeaderSize, kMetaPayload);
  uint32_t n = d.u32();
  d.u32();
  if (n == 0 || n > kDataTagCapacity) {
    *why = "data tag count " + std::to_string(n) + " out of range";
    return false;
  }
  for (uint32_t i = 0; i < n; i++) {
    DataTag t;
    t.blocknr = d.u64();
    t.checksum = d.u64();
    tags->push_back(t);
  }
  return !d.overflow();
}

inline void encode_commit_block(uint8_t* block, uint64_t log_blocknr, const CommitRecord& c) {
  MetaHeader h;
  h.magic = kMagicJournalCommit;
  encode_meta_header(block, h);
  Encoder e(block + kMetaHeaderSize, kMetaPayload);
  e.u64(c.txid);
  e.u64(c.log_blocks);
  e.u64(c.txn_hash);
  e.u32(c.flags);
  e.skip(kMetaPayload - e.pos());
  seal_meta_block(block, log_blocknr, c.txid);
}

inline CommitRecord decode_commit_block(const uint8_t* block) {
  Decoder d(block + kMetaHeaderSize, kMetaPayload);
  CommitRecord c;
  c.txid = d.u64();
  c.log_blocks = d.u64();
  c.txn_hash = d.u64();
  c.flags = d.u32();
  return c;
}

}  // namespace stablefs
