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
  for (uint64_t b = sb_.data_start; b < sb_.total_blocks; b++) {
    if (block_bit_unknown(b)) continue;
    bool used = (owner_[b] && !cleared_.count(owner_[b])) || shared_.count(b);
    if (used && !bit(bbmp_, b)) unmarked.push_back(b);
    if (!used && bit(bbmp_, b)) leaked.push_back(b);
  }
  if (!unmarked.empty()) {
    std::string some;
    for (size_t i = 0; i < unmarked.size() && i < 10; i++)
      some += (i ? ", " : "") + std::to_string(unmarked[i]) + " (inode " +
              std::to_string(owner_[unmarked[i]]) + ")";
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
  for (uint64_t b = 0; b < sb_.data_start; b++)
    if (!block_bit_unknown(b) && !bit(bbmp_, b)) {
      fixable("metadata block " + std::to_string(b) + " is free in the bitmap", true,
              [&](RepairPlan& p) {
                for (uint64_t m = 0; m < sb_.data_start; m++) p.block_bits[m] = true;
              });
      break;
    }
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
  load(sb_.inode_bitmap_start, sb_.inode_bitmap_blocks, kMagicInodeBitmap, ibmp_);
  load(sb_.block_bitmap_start, sb_.block_bitmap_blocks, kMagicBlockBitmap, bbmp_);
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
        std::min(first + kBitsPerBitmapBlock, inodes ? sb_.inode_count + 1 : sb_.total_blocks);
    fixable_if_complete(std::string(inodes ? "inode" : "block") + " bitmap block " +
                            std::to_string(nr) + " is corrupt (it can be rebuilt from the " +
                            (inodes ? "inodes" : "blocks") + " in use)",
                        true, [&](RepairPlan& p) {
                          p.rebuilt_bitmaps.insert(nr);
                          for (uint64_t n = first; n < end; n++) {
                            bool used = inodes
                                            ? n == 0 || (slots_used_.count(n) && !cleared_.count(n))
                                            : n < sb_.data_start ||
                                                  (owner_[n] && !cleared_.count(owner_[n])) ||
                                                  shared_.count(n);
                            if (used) (inodes ? p.inode_bits : p.block_bits)[n] = true;
                          }
                        });
  }
}

}  // namespace stablefs::fsck_internal
