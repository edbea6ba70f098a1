#include "journal/delta.h"

#include <cstring>

#include "core/base/endian.h"
#include "core/base/format.h"

namespace stablefs {

namespace {

constexpr uint32_t kWord = 8;
constexpr uint32_t kWords = kBlockSize / kWord;
// The header words that sealing rewrites (txid at 16, checksum at 32):
// never part of a delta.
bool sealed_word(uint32_t w) { return w == 2 || w == kChecksumOffset / kWord; }

bool same_word(const uint8_t* a, const uint8_t* b, uint32_t w) {
  return sealed_word(w) || std::memcmp(a + w * kWord, b + w * kWord, kWord) == 0;
}

}  // namespace

bool DeltaWriter::add(uint64_t home, const uint8_t* base, const uint8_t* next) {
  // Runs of differing words, encoded into a scratch entry first: most
  // blocks change in a few places, and one that changed in many is
  // abandoned as soon as it outgrows kMaxDeltaEntry.
  uint8_t entry[kMaxDeltaEntry];
  uint32_t len = kDeltaEntryHeader;
  uint16_t ranges = 0;
  for (uint32_t w = 0; w < kWords;) {
    if (same_word(base, next, w)) {
      w++;
      continue;
    }
    uint32_t end = w + 1;
    while (end < kWords && !same_word(base, next, end)) end++;
    uint32_t bytes = (end - w) * kWord;
    if (len + kDeltaRangeHeader + bytes > kMaxDeltaEntry) return false;
    put_le16(entry + len, uint16_t(w * kWord));
    put_le16(entry + len + 2, uint16_t(bytes));
    std::memcpy(entry + len + kDeltaRangeHeader, next + w * kWord, bytes);
    len += kDeltaRangeHeader + bytes;
    ranges++;
    w = end;
  }
  put_le64(entry, home);
  put_le64(entry + 8, get_le64(next + kChecksumOffset));
  put_le16(entry + 16, ranges);
  std::memset(entry + 18, 0, 6);

  if (blocks_.empty() || used_ + len > kMetaPayload) {
    AlignedBlock& b = blocks_.emplace_back();
    MetaHeader h;
    h.magic = kMagicJournalDelta;
    encode_meta_header(b.data(), h);
    used_ = 8;  // count, zero
  }
  uint8_t* payload = blocks_.back().data() + kMetaHeaderSize;
  std::memcpy(payload + used_, entry, len);
  used_ += len;
  put_le32(payload, get_le32(payload) + 1);
  entries_++;
  return true;
}

bool decode_delta_block(const uint8_t* block, std::vector<DeltaEntry>* out, std::string* why) {
  Decoder d(block + kMetaHeaderSize, kMetaPayload);
  uint32_t n = d.u32();
  d.u32();
  if (n == 0 || n > kMetaPayload / kDeltaEntryHeader) {
    *why = "delta count " + std::to_string(n) + " out of range";
    return false;
  }
  for (uint32_t i = 0; i < n; i++) {
    DeltaEntry e;
    e.home = d.u64();
    e.checksum = d.u64();
    e.range_count = d.u16();
    d.skip(6);
    size_t first = d.pos();
    uint32_t prev_end = 0;
    for (uint16_t r = 0; r < e.range_count; r++) {
      uint32_t off = d.u16(), len = d.u16();
      bool fits = len > 0 && off % kWord == 0 && len % kWord == 0 && off >= prev_end &&
                  off + len <= kBlockSize;
      for (uint32_t w = off / kWord; fits && w < (off + len) / kWord; w++) fits = !sealed_word(w);
      if (!fits) {
        *why = "delta range " + std::to_string(off) + "+" + std::to_string(len) + " for block " +
               std::to_string(e.home) + " is invalid";
        return false;
      }
      d.skip(len);
      prev_end = off + len;
    }
    if (d.overflow()) break;
    e.ranges.assign(block + kMetaHeaderSize + first, block + kMetaHeaderSize + d.pos());
    out->push_back(std::move(e));
  }
  if (d.overflow()) {
    *why = "delta entries run past the end of the block";
    return false;
  }
  return true;
}

bool apply_delta(uint8_t* block, const DeltaEntry& e) {
  size_t pos = 0;
  for (uint16_t r = 0; r < e.range_count; r++) {
    uint16_t off = get_le16(e.ranges.data() + pos), len = get_le16(e.ranges.data() + pos + 2);
    std::memcpy(block + off, e.ranges.data() + pos + kDeltaRangeHeader, len);
    pos += kDeltaRangeHeader + len;
  }
  seal_meta_block(block, e.home, e.txid);
  return get_le64(block + kChecksumOffset) == e.checksum;
}

}  // namespace stablefs
