// Superblock and geometry parsing and validation (core/base/format.cc):
// decode_superblock on fuzzed bytes, plan_layout on fuzzed sizes, and the
// metadata header and inode record decoders.
//
// Input: u8 flags | u64 device_blocks | u64 size for plan_layout | block
// bytes (zero-padded to 4096). flags bit 0 clear: the superblock checksum
// is recomputed over the fuzzed bytes (else the fuzzer would never get past
// it); bit 1: decode as the backup copy (block 1).
//
// Beyond "no crash", an accepted superblock must describe a geometry the
// engine can index without overflow: every region inside the device, in
// order, not overlapping; and it must survive an encode/decode round trip.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "core/base/checksum.h"
#include "core/base/endian.h"
#include "core/base/format.h"
#include "fuzz/fuzz_check.h"

using namespace stablefs;

namespace {

// Regions in on-disk order, each non-empty and after the previous one.
void check_geometry(const Superblock& sb) {
  struct Region {
    uint64_t start, blocks;
  };
  const Region regions[] = {
      {sb.inode_bitmap_start, sb.inode_bitmap_blocks},
      {sb.block_bitmap_start, sb.block_bitmap_blocks},
      {sb.inode_table_start, sb.inode_table_blocks},
      {sb.csum_table_start, sb.csum_table_blocks},
      {sb.journal_start, sb.journal_blocks},
  };
  uint64_t next = 2;  // after both superblocks
  for (const Region& r : regions) {
    FUZZ_CHECK(r.blocks > 0);
    FUZZ_CHECK(r.start >= next);
    FUZZ_CHECK(r.blocks <= sb.total_blocks && r.start <= sb.total_blocks - r.blocks);
    next = r.start + r.blocks;
  }
  FUZZ_CHECK(sb.data_start >= next && sb.data_start < sb.total_blocks);
  FUZZ_CHECK(sb.inode_count > 0 && sb.inode_count % kInodesPerBlock == 0);
  FUZZ_CHECK(inode_block(sb, sb.inode_count) < sb.inode_table_start + sb.inode_table_blocks);
  FUZZ_CHECK(sb.inode_bitmap_blocks * kBitsPerBitmapBlock > sb.inode_count);
  FUZZ_CHECK(sb.block_bitmap_blocks * kBitsPerBitmapBlock >= sb.total_blocks);
  FUZZ_CHECK(sb.csum_table_blocks * kChecksumsPerBlock >= sb.total_blocks);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 17) return -1;  // not worth keeping in the corpus
  const uint8_t flags = data[0];
  const uint64_t device_blocks = get_le64(data + 1);
  const uint64_t plan_size = get_le64(data + 9);
  alignas(8) std::array<uint8_t, kBlockSize> blk{};
  std::memcpy(blk.data(), data + 17, std::min<size_t>(size - 17, kBlockSize));
  const uint64_t nr = flags & 2 ? kSuperblockB : kSuperblockA;
  if (!(flags & 1)) put_le64(blk.data() + kBlockSize - 8, block_checksum(nr, blk.data(), kBlockSize - 8));

  std::string why;
  auto sb = decode_superblock(blk.data(), nr, device_blocks, &why);
  if (sb.ok()) {
    check_geometry(*sb);
    FUZZ_CHECK(device_blocks == 0 || sb->total_blocks <= device_blocks);
    FUZZ_CHECK(sb->journal_tail < sb->journal_blocks);
    alignas(8) std::array<uint8_t, kBlockSize> again{};
    encode_superblock(again.data(), *sb, nr);
    auto back = decode_superblock(again.data(), nr, device_blocks, nullptr);
    FUZZ_CHECK(back.ok());
    FUZZ_CHECK(back->total_blocks == sb->total_blocks && back->sequence == sb->sequence &&
               back->journal_tail == sb->journal_tail && back->state == sb->state &&
               back->uuid == sb->uuid && back->incompat == sb->incompat);
  } else {
    FUZZ_CHECK(sb.error() == EUCLEAN && !why.empty());
  }

  auto plan = plan_layout(plan_size);
  if (plan.ok()) check_geometry(*plan);

  // The block as any metadata block: header verification never reads past
  // the block, and an inode record decodes to what it encodes.
  std::string v;
  (void)verify_meta_block(blk.data(), decode_meta_header(blk.data()).blocknr, 0, &v);
  DiskInode ino = decode_inode(blk.data() + kMetaHeaderSize);
  alignas(8) std::array<uint8_t, kInodeSize> rec{};
  encode_inode(rec.data(), ino);
  DiskInode ino2 = decode_inode(rec.data());
  FUZZ_CHECK(ino2.mode == ino.mode && ino2.size == ino.size && ino2.root == ino.root &&
             ino2.map_depth == ino.map_depth && ino2.inline_count == ino.inline_count &&
             ino2.mtime.sec == ino.mtime.sec && ino2.xattr_block == ino.xattr_block);
  return 0;
}
