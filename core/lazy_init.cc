#include "core/lazy_init.h"

namespace stablefs {

RegionWriter::RegionWriter(BlockDevice& dev, Progress progress, uint64_t total)
    : dev_(dev), progress_(std::move(progress)), total_(total) {
  for (auto& b : bufs_) b = std::make_unique<AlignedBlock>();
}

void seal_fresh_block(uint8_t* block, uint64_t blocknr, uint32_t magic) {
  MetaHeader h;
  h.magic = magic;
  h.blocknr = blocknr;
  encode_meta_header(block, h);
  seal_meta_block(block, blocknr, 0);
}

Status initialise_above_marks(BlockDevice& dev, const Superblock& from, const Superblock& to) {
  const InitialisedSpans old_spans = initialised_spans(from);
  const InitialisedSpans new_spans = initialised_spans(to);
  const std::pair<BlockSpan, BlockSpan> grown[] = {
      {old_spans.inode_bitmap, new_spans.inode_bitmap},
      {old_spans.block_bitmap, new_spans.block_bitmap},
      {old_spans.inode_table, new_spans.inode_table},
      {old_spans.csum_table, new_spans.csum_table},
  };
  const uint32_t magics[] = {kMagicInodeBitmap, kMagicBlockBitmap, kMagicInodeTable,
                             kMagicChecksumTable};
  RegionWriter w(dev, nullptr, 0);
  bool wrote = false;
  for (size_t i = 0; i < std::size(grown); i++) {
    const auto& [was, now] = grown[i];
    // Spans only grow at their end; every block past the old end is new.
    if (now.end() <= was.end()) continue;
    // Above the old marks nothing is in use: all-zero payloads say so.
    SFS_TRY(w.write_region(was.end(), now.end() - was.end(), [&](uint8_t* p, uint64_t b) {
      seal_fresh_block(p, b, magics[i]);
    }));
    wrote = true;
  }
  if (wrote) SFS_TRY(dev.flush());
  return Status::Ok();
}

}  // namespace stablefs
