// Journal replay (journal/replay.cc) over a fuzzed log. The input is a
// small program that writes the log area of a 256-block in-memory device:
// well-formed transactions (descriptor, copies, revokes, data tags, commit
// with the right whole-transaction hash) with fuzzer-chosen homes, txids,
// counts and flags, stale or torn blocks, and raw byte patches (re-sealed
// unless flag bit 0 says otherwise). Well-formed records let the fuzzer
// reach the scan's later stages; patches make them subtly wrong.
//
// Beyond "no crash": replay never writes into the log, never writes a
// block outside the device, writes home only blocks that verify as
// metadata, and returns a head inside the log. For a program of whole
// transactions only (no patches, skips or unexpected txids, no data tags,
// no wrap), a model says how many replay must accept: the valid ones
// before the first invalid one.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/base/checksum.h"
#include "core/base/endian.h"
#include "core/base/format.h"
#include "core/io/mem_device.h"
#include "fuzz/fuzz_check.h"
#include "fuzz/fuzz_input.h"
#include "journal/buffer.h"
#include "journal/delta.h"
#include "journal/format.h"
#include "journal/journal.h"

using namespace stablefs;

namespace {

constexpr uint64_t kDeviceBlocks = 256;
constexpr JournalGeometry kLog{16, 64};
constexpr uint64_t kHomeFirst = kLog.start + kLog.blocks;  // 80: homes and data above

class LogWriter {
 public:
  LogWriter(MemDevice& dev, uint64_t pos) : dev_(dev), pos_(pos) {}

  uint64_t pos() const { return pos_; }
  void skip(uint64_t n) { pos_ = (pos_ + n) % kLog.blocks; }
  uint64_t blocknr() const { return kLog.start + pos_; }

  // Appends one block at the current position.
  void put(const uint8_t* b) {
    std::memcpy(buf_.data(), b, kBlockSize);
    (void)dev_.write(blocknr(), buf_.data(), kBlockSize);
    skip(1);
  }

 private:
  MemDevice& dev_;
  uint64_t pos_;
  AlignedBlock buf_;
};

uint64_t pick_home(fuzz::Input& in) {
  uint8_t v = in.u8();
  // Mostly valid homes; now and then anything, to reach the range checks.
  if (v >= 0xF0) return in.u16();
  return kHomeFirst + v % (kDeviceBlocks - kHomeFirst);
}

// What write_transaction wrote: whether replay must accept it (every
// home in range, a commit with the right hash, at least one block before
// it, no data tag that could make replay discard it), and its length.
struct Written {
  bool valid = true;
  bool open = false;  // replay may rightly accept or reject it
  uint64_t blocks = 0;
};

// Replay's rule: any block of the device outside the log. A copy of block
// 0 is rejected too (the superblock is never journalled; the scan takes
// home 0 for "a journal record" and finds the copy misdirected).
bool home_in_range(uint64_t home) {
  return home < kDeviceBlocks && (home < kLog.start || home >= kLog.start + kLog.blocks);
}
bool copy_home_in_range(uint64_t home) { return home > 0 && home_in_range(home); }

// One transaction: { descriptor, copies } deltas? revoke? tags? commit.
Written write_transaction(fuzz::Input& in, MemDevice& dev, LogWriter& log, uint64_t txid) {
  Written w;
  const uint8_t shape = in.u8();
  const uint32_t copies = in.u8() % 5;
  const uint32_t revokes = in.u8() % 3;
  const uint32_t tags = in.u8() % 3;
  const bool async = shape & 1;
  const bool no_commit = (shape & 0x0E) == 0x0E;  // torn: everything but the commit
  const bool bad_hash = (shape & 0x70) == 0x70;
  uint64_t hash = txn_hash_init(txid);
  uint64_t n = 0;
  alignas(8) uint8_t b[kBlockSize];
  auto append = [&](uint8_t* blk) {
    hash = txn_hash_step(hash, blk);
    log.put(blk);
    n++;
  };
  // Tags are checked against the device as it is before replay writes
  // anything; a home written by this program's copies is data the tag may
  // or may not match once replayed, so any tag makes the outcome open.
  if (tags > 0) w.open = true;
  if (copies > 0) {
    std::vector<uint64_t> homes;
    for (uint32_t i = 0; i < copies; i++) homes.push_back(pick_home(in));
    for (uint64_t h : homes) w.valid &= copy_home_in_range(h);
    encode_journal_list(b, kMagicJournalDescriptor, log.blocknr(), txid, homes.data(), copies);
    append(b);
    for (uint64_t home : homes) {
      std::memset(b, 0, sizeof b);
      MetaHeader h;
      h.magic = kMagicDirectory;
      encode_meta_header(b, h);
      b[kMetaHeaderSize] = in.u8();
      seal_meta_block(b, home, txid);
      append(b);
    }
  }
  if (shape & 0x80) {
    // Delta records of small changes to blocks that may or may not have a
    // logged version to apply to: replay may accept the transaction, or
    // refuse the log (EUCLEAN) when a delta does not rebuild its version.
    w.open = true;
    DeltaWriter deltas;
    for (uint32_t i = 0, k = 1 + in.u8() % 2; i < k; i++) {
      AlignedBlock base, next;
      MetaHeader h;
      h.magic = kMagicDirectory;
      encode_meta_header(base.data(), h);
      const uint64_t home = pick_home(in);
      base.data()[kMetaHeaderSize] = in.u8();
      seal_meta_block(base.data(), home, txid - 1);
      std::memcpy(next.data(), base.data(), kBlockSize);
      for (int j = 0, m = in.u8() % 4; j < m; j++) next.data()[in.u16() % kBlockSize] = in.u8();
      seal_meta_block(next.data(), home, txid);
      (void)deltas.add(home, base.data(), next.data());
    }
    for (AlignedBlock& d : deltas.blocks()) {
      seal_meta_block(d.data(), log.blocknr(), txid);
      append(d.data());
    }
  }
  if (revokes > 0) {
    std::vector<uint64_t> homes;
    for (uint32_t i = 0; i < revokes; i++) homes.push_back(pick_home(in));
    for (uint64_t h : homes) w.valid &= home_in_range(h);
    encode_journal_list(b, kMagicJournalRevoke, log.blocknr(), txid, homes.data(), revokes);
    append(b);
  }
  if (tags > 0) {
    std::vector<DataTag> t;
    for (uint32_t i = 0; i < tags; i++) {
      DataTag tag;
      tag.blocknr = pick_home(in);
      // The right checksum of what is there now, or a wrong one: replay
      // must then discard the transaction (if it is the newest).
      AlignedBlock data;
      if (tag.blocknr < kDeviceBlocks) (void)dev.read(tag.blocknr, data.data(), kBlockSize);
      tag.checksum = block_checksum(tag.blocknr, data.data(), kBlockSize) + (in.u8() & 1);
      t.push_back(tag);
    }
    encode_data_tags(b, log.blocknr(), txid, t.data(), tags);
    append(b);
  }
  w.blocks = n + (no_commit ? 0 : 1);
  if (n == 0 || no_commit || bad_hash) w.valid = false;
  if (no_commit) return w;
  CommitRecord c;
  c.txid = txid;
  c.log_blocks = n;
  c.txn_hash = hash + (bad_hash ? 1 : 0);
  c.flags = async ? kCommitAsync : 0;
  encode_commit_block(b, log.blocknr(), c);
  log.put(b);
  return w;
}

// Overwrites bytes of one log block and, unless told not to, re-seals it
// against the block number its header names (a copy names its home).
void patch(fuzz::Input& in, MemDevice& dev, bool reseal) {
  uint64_t nr = kLog.start + in.u8() % kLog.blocks;
  uint16_t off = in.u16() % kBlockSize;
  size_t len = in.u8() % 32 + 1;
  std::vector<uint8_t> b = dev.durable_block(nr);
  for (size_t j = 0; j < len && off + j < kBlockSize; j++) b[off + j] = in.u8();
  if (reseal)
    put_le64(b.data() + kChecksumOffset,
             compute_meta_checksum(b.data(), decode_meta_header(b.data()).blocknr));
  AlignedBlock a;
  std::memcpy(a.data(), b.data(), kBlockSize);
  (void)dev.write(nr, a.data(), kBlockSize);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t flags = in.u8();
  JournalPosition tail;
  tail.pos = in.u8() % kLog.blocks;
  tail.txid = 1 + in.u8();

  MemDevice dev(kDeviceBlocks);
  // Home blocks start out as recognisable data, so a wrong write shows.
  for (uint64_t nr = kHomeFirst; nr < kDeviceBlocks; nr++) dev.poke(nr, 100, uint8_t(nr));
  LogWriter log(dev, tail.pos);
  uint64_t txid = tail.txid;
  // A model of the scan for programs made only of transactions: replay
  // must accept exactly the valid ones before the first invalid one, as
  // long as they fit in the live log (at most 63 blocks).
  bool modelled = true;
  bool prefix_open = true;
  uint64_t expect_txns = 0, log_used = 0;
  for (int ops = 0; ops < 48 && !in.done(); ops++) {
    switch (in.u8() % 4) {
      case 0: {
        Written w = write_transaction(in, dev, log, txid);
        txid++;
        log_used += w.blocks;
        if (w.open) modelled = false;
        if (prefix_open && w.valid) expect_txns++;
        if (!w.valid) prefix_open = false;
        break;
      }
      case 1:
        log.skip(in.u8() % 8);
        modelled = false;
        break;
      case 2:
        patch(in, dev, !(flags & 1));
        modelled = false;
        break;
      case 3:  // a transaction with a txid the scan does not expect next
        write_transaction(in, dev, log, txid + 1 + in.u8() % 3);
        modelled = false;
        break;
    }
  }
  if (log_used >= kLog.blocks) modelled = false;  // the log wrapped onto itself
  (void)dev.flush();

  std::vector<std::vector<uint8_t>> before(kDeviceBlocks);
  for (uint64_t nr = 0; nr < kDeviceBlocks; nr++) before[nr] = dev.durable_block(nr);
  auto r = replay_journal(dev, kLog, tail);
  if (!r.ok()) return 0;
  FUZZ_CHECK(r->head.pos < kLog.blocks);
  FUZZ_CHECK(r->head.txid >= tail.txid);
  FUZZ_CHECK(r->discarded <= 1);
  uint64_t changed = 0;
  for (uint64_t nr = 0; nr < kDeviceBlocks; nr++) {
    std::vector<uint8_t> now = dev.durable_block(nr);
    if (now == before[nr]) continue;
    changed++;
    FUZZ_CHECK(nr < kLog.start || nr >= kLog.start + kLog.blocks);  // never the log
    FUZZ_CHECK(verify_meta_block(now.data(), nr, 0).ok());
  }
  FUZZ_CHECK(changed <= r->blocks);
  if (r->transactions == 0) FUZZ_CHECK(r->blocks == 0);
  if (modelled) {
    FUZZ_CHECK(r->transactions == expect_txns);
    FUZZ_CHECK(r->discarded == 0);
  }
  return 0;
}
