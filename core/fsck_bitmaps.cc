// fsck: the inode and block bitmaps against what is in use, and the
// rebuild of a bitmap block that fails verification (core/fsck_checker.h).
#include <algorithm>
#include <string>

#include "core/fsck_checker.h"

namespace stablefs::fsck_internal {

// The bitmap against what is reachable: owned by an inode the repairs do
// not free, or claimed twice (kept until someone decides).
void Checker::check_block_bitmap() {
  std::vector<uint64_t> unmarked, leaked;
  for (uint64_t b = sb_.data_start; b < sb_.block_hwm; b++) {
    if (block_bit_unknown(b)) continue;
    bool used = (owner(b) && !cleared_.count(owner(b))) || shared_.count(b);
    if (used && !bit(bbmp_, b)) unmarked.push_back(b);
    if (!used && bit(bbmp_, b)) leaked.push_back(b);
  }
  if (!unmarked.empty()) {
    std::string some;
    for (size_t i = 0; i < unmarked.size() && i < 10; i++)
      some += (i ? ", " : "") + std::to_string(unmarked[i]) + " (inode " +
              std::to_string(owner(unmarked[i])) + ")";
    fixable(std::to_string(unmarked.size()) + " used blocks are free in the bitmap: " + some +
                (unmarked.size() > 10 ? ", ..." : ""),
            true, [&](RepairPlan& p) {
              for (uint64_t b : unmarked) p.block_bits[b] = true;
            });
  }
  if (!leaked.empty())
    fixable_if_complete(
        std::to_string(leaked.size()) + " blocks are marked in use but belong to no inode", true,
        [&](RepairPlan&) {
          for (uint64_t b : leaked) leak_block(b);
        });
  if (uint64_t b = first_clear_metadata_bit(); b < sb_.data_start)
    fixable("metadata block " + std::to_string(b) + " is free in the bitmap", true,
            [&](RepairPlan& p) {
              for (uint64_t m = 0; m < sb_.data_start; m++) p.block_bits[m] = true;
            });
}

// The first block before data_start that is free in the block bitmap (a
// bitmap block that failed verification aside), or data_start. A byte at a
// time: on a large device the metadata region is millions of bits.
uint64_t Checker::first_clear_metadata_bit() const {
  for (uint64_t first = 0; first < sb_.data_start; first += kBitsPerBitmapBlock) {
    if (block_bit_unknown(first)) continue;
    const uint8_t* p = bbmp_[first / kBitsPerBitmapBlock]->payload();
    const uint64_t n = std::min(kBitsPerBitmapBlock, sb_.data_start - first);
    for (uint64_t i = 0; i < n; i++) {
      if (i % 8 == 0 && i + 8 <= n && p[i / 8] == 0xff) {
        i += 7;
        continue;
      }
      if (!(p[i / 8] >> (i % 8) & 1)) return first + i;
    }
  }
  return sb_.data_start;
}

// A block nothing reaches is freed, and its checksum entry zeroed: the
// stale checksum of bytes nobody owns is not kept as if it meant something.
void Checker::leak_block(uint64_t b) {
  plan_.block_bits[b] = false;
  if (auto c = recorded_checksum(b); c.ok() && *c != 0) plan_.checksums_to_zero.push_back(b);
}

// A bitmap block that fails verification stands in as zeros (a buffer of
// the cache's own, which a rebuild fills and the journal writes whole).
void Checker::load_bitmaps() {
  auto load = [&](uint64_t start, uint64_t count, uint32_t magic, auto& out) {
    for (uint64_t nr = start; nr < start + count; nr++) {
      auto b = cache_.read(nr, magic);
      if (!b.ok()) corrupt_bitmaps_.insert(nr);
      out.push_back(b.ok() ? *b : cache_.create(nr, magic, 0));
    }
  };
  const InitialisedSpans spans = initialised_spans(sb_);
  load(spans.inode_bitmap.first, spans.inode_bitmap.count, kMagicInodeBitmap, ibmp_);
  load(spans.block_bitmap.first, spans.block_bitmap.count, kMagicBlockBitmap, bbmp_);
}

// Above a high-water mark nothing is in use. The last bitmap block under a
// mark may reach past it: a bit set there is an inode or block in use
// where the engine never allocates (core/lazy_init.h). Inode table slots
// above the mark are checked as they are read (run()).
void Checker::check_high_water_marks() {
  auto scan = [&](const auto& bm, uint64_t mark, uint64_t bits, const char* what) {
    uint64_t end = std::min<uint64_t>(bm.size() * kBitsPerBitmapBlock, bits);
    uint64_t first_set = 0, count = 0;
    for (uint64_t n = mark; n < end; n++)
      if (bit(bm, n) && count++ == 0) first_set = n;
    if (count)
      problem(std::to_string(count) + " " + what + " above the high-water mark " +
              std::to_string(mark) + " are marked in use in the bitmap (first: " +
              std::to_string(first_set) + ")");
  };
  scan(ibmp_, sb_.inode_hwm + 1, sb_.inode_count + 1, "inodes");
  scan(bbmp_, sb_.block_hwm, sb_.total_blocks, "blocks");
}

// A bitmap is what the rest of the filesystem says is in use, so a
// corrupt block of one is rebuilt from that, once all of it was read: the
// inode bitmap from the slots in use (bit 0 is reserved, as mkfs sets it),
// the block bitmap from the metadata region and every block an inode
// reaches. The repairs' frees are already counted out (cleared_).
void Checker::rebuild_bitmaps() {
  for (uint64_t nr : corrupt_bitmaps_) {
    const bool inodes = nr < sb_.block_bitmap_start;
    const uint64_t first =
        (nr - (inodes ? sb_.inode_bitmap_start : sb_.block_bitmap_start)) * kBitsPerBitmapBlock;
    const uint64_t end =
        std::min(first + kBitsPerBitmapBlock, inodes ? sb_.inode_hwm + 1 : sb_.block_hwm);
    fixable_if_complete(std::string(inodes ? "inode" : "block") + " bitmap block " +
                            std::to_string(nr) + " is corrupt (it can be rebuilt from the " +
                            (inodes ? "inodes" : "blocks") + " in use)",
                        true, [&](RepairPlan& p) {
                          p.rebuilt_bitmaps.insert(nr);
                          for (uint64_t n = first; n < end; n++) {
                            bool used = inodes
                                            ? n == 0 || (slots_used_.count(n) && !cleared_.count(n))
                                            : n < sb_.data_start ||
                                                  (owner(n) && !cleared_.count(owner(n))) ||
                                                  shared_.count(n);
                            if (used) (inodes ? p.inode_bits : p.block_bits)[n] = true;
                          }
                        });
  }
}

}  // namespace stablefs::fsck_internal
