// Specification of the on-disk encoding: core/base/format.h and endian.h.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/base/checksum.h"
#include "core/base/endian.h"
#include "core/base/format.h"

namespace stablefs {
namespace {

using Block = std::array<uint8_t, kBlockSize>;

Superblock sample_superblock(uint64_t total_blocks) {
  auto plan = plan_layout(total_blocks);
  EXPECT_TRUE(plan.ok());
  Superblock sb = *plan;
  for (size_t i = 0; i < sb.uuid.size(); i++) sb.uuid[i] = uint8_t(0xA0 + i);
  sb.compat = 0x11;
  sb.ro_compat = 0x22;
  sb.journal_tail = 7;
  sb.journal_tail_txid = 99;
  sb.sequence = 12345;
  sb.state = kStateMounted;
  sb.mkfs_time = 1700000000;
  sb.mount_count = 42;
  return sb;
}

// ---- endian.h ----

TEST(Endian, FieldsAreLittleEndian) {
  uint8_t b[8];
  put_le16(b, 0x0102);
  EXPECT_EQ(b[0], 0x02);
  EXPECT_EQ(b[1], 0x01);
  put_le32(b, 0x01020304);
  EXPECT_EQ((std::vector<uint8_t>(b, b + 4)), (std::vector<uint8_t>{4, 3, 2, 1}));
  put_le64(b, 0x0102030405060708ull);
  EXPECT_EQ((std::vector<uint8_t>(b, b + 8)), (std::vector<uint8_t>{8, 7, 6, 5, 4, 3, 2, 1}));
  EXPECT_EQ(get_le64(b), 0x0102030405060708ull);
  EXPECT_EQ(get_le32(b), 0x05060708u);
  EXPECT_EQ(get_le16(b), 0x0708);
  put_le64(b, ~0ull);
  EXPECT_EQ(get_le64(b), ~0ull);
}

TEST(Decoder, ReadsPastTheEndReturnZeroAndSetOverflow) {
  uint8_t buf[6] = {1, 2, 3, 4, 5, 6};
  Decoder d(buf, sizeof buf);
  EXPECT_EQ(d.u32(), 0x04030201u);
  EXPECT_FALSE(d.overflow());
  EXPECT_EQ(d.u32(), 0u);  // only 2 bytes left
  EXPECT_TRUE(d.overflow());
  // Once overflowed, even reads that would fit return zero: a corrupt
  // record is not half-decoded.
  EXPECT_EQ(d.u8(), 0);
  EXPECT_EQ(d.u16(), 0);
  EXPECT_EQ(d.remaining(), 2u);
}

TEST(Decoder, HugeLengthFromDiskCannotWrapAround) {
  std::vector<uint8_t> buf(64, 0xEE);
  uint8_t dst[16] = {};
  Decoder d(buf.data(), buf.size());
  d.u64();  // pos 8: now pos + (SIZE_MAX - 7) wraps to 0
  EXPECT_FALSE(d.bytes(dst, std::numeric_limits<size_t>::max() - 7));
  EXPECT_TRUE(d.overflow());
  EXPECT_EQ(dst[0], 0);

  Decoder s(buf.data(), buf.size());
  s.u32();
  s.skip(std::numeric_limits<size_t>::max());
  EXPECT_TRUE(s.overflow());
  EXPECT_EQ(s.u64(), 0u);
  EXPECT_EQ(s.pos(), 4u);
}

TEST(Encoder, NeverWritesPastTheEnd) {
  uint8_t buf[10] = {};
  buf[9] = 0x5A;
  Encoder e(buf, 9);
  e.u64(~0ull);
  e.u16(0xFFFF);  // needs 2, has 1
  EXPECT_TRUE(e.overflow());
  EXPECT_EQ(e.pos(), 8u);
  e.bytes(buf, std::numeric_limits<size_t>::max() - 7);
  e.skip(std::numeric_limits<size_t>::max());
  EXPECT_EQ(buf[8], 0);
  EXPECT_EQ(buf[9], 0x5A);
}

// ---- superblock ----

TEST(Superblock, EncodeDecodeRoundTrip) {
  Superblock sb = sample_superblock(100000);
  Block b;
  encode_superblock(b.data(), sb, kSuperblockA);
  std::string why;
  auto got = decode_superblock(b.data(), kSuperblockA, 100000, &why);
  ASSERT_TRUE(got.ok()) << why;
  const Superblock& d = *got;
  EXPECT_EQ(d.version, kFormatVersion);
  EXPECT_EQ(d.compat, sb.compat);
  EXPECT_EQ(d.incompat, sb.incompat);
  EXPECT_EQ(d.ro_compat, sb.ro_compat);
  EXPECT_EQ(d.uuid, sb.uuid);
  EXPECT_EQ(d.block_size, kBlockSize);
  EXPECT_EQ(d.total_blocks, sb.total_blocks);
  EXPECT_EQ(d.inode_count, sb.inode_count);
  EXPECT_EQ(d.inode_bitmap_start, sb.inode_bitmap_start);
  EXPECT_EQ(d.inode_bitmap_blocks, sb.inode_bitmap_blocks);
  EXPECT_EQ(d.block_bitmap_start, sb.block_bitmap_start);
  EXPECT_EQ(d.block_bitmap_blocks, sb.block_bitmap_blocks);
  EXPECT_EQ(d.inode_table_start, sb.inode_table_start);
  EXPECT_EQ(d.inode_table_blocks, sb.inode_table_blocks);
  EXPECT_EQ(d.csum_table_start, sb.csum_table_start);
  EXPECT_EQ(d.csum_table_blocks, sb.csum_table_blocks);
  EXPECT_EQ(d.journal_start, sb.journal_start);
  EXPECT_EQ(d.journal_blocks, sb.journal_blocks);
  EXPECT_EQ(d.data_start, sb.data_start);
  EXPECT_EQ(d.root_ino, kRootIno);
  EXPECT_EQ(d.journal_tail, 7u);
  EXPECT_EQ(d.journal_tail_txid, 99u);
  EXPECT_EQ(d.sequence, 12345u);
  EXPECT_EQ(d.state, uint32_t(kStateMounted));
  EXPECT_EQ(d.mkfs_time, 1700000000u);
  EXPECT_EQ(d.mount_count, 42u);
}

TEST(Superblock, LayoutMatchesTheDocumentedOffsets) {
  Superblock sb = sample_superblock(100000);
  Block b;
  encode_superblock(b.data(), sb, kSuperblockA);
  EXPECT_EQ(get_le64(&b[0]), kSuperMagic);
  EXPECT_EQ(get_le32(&b[8]), kFormatVersion);
  EXPECT_EQ(b[24], 0xA0);
  EXPECT_EQ(get_le32(&b[40]), kBlockSize);
  EXPECT_EQ(get_le64(&b[48]), 100000u);
  EXPECT_EQ(get_le64(&b[144]), sb.data_start);
  EXPECT_EQ(get_le64(&b[176]), 12345u);
  EXPECT_EQ(get_le32(&b[184]), uint32_t(kStateMounted));
  EXPECT_EQ(get_le64(&b[200]), 42u);
  for (size_t i = 208; i < kBlockSize - 8; i++) ASSERT_EQ(b[i], 0) << "byte " << i;
}

TEST(Superblock, LabelRoundTripsAtOffset208NulPadded) {
  Superblock sb = sample_superblock(100000);
  sb.label = "data disk";
  Block b;
  encode_superblock(b.data(), sb, kSuperblockA);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(&b[208]), 9), "data disk");
  for (size_t i = 208 + 9; i < kBlockSize - 8; i++) ASSERT_EQ(b[i], 0) << "byte " << i;
  std::string why;
  auto got = decode_superblock(b.data(), kSuperblockA, 100000, &why);
  ASSERT_TRUE(got.ok()) << why;
  EXPECT_EQ(got->label, "data disk");
}

// An image made before the label field has zeros at 208: the same bytes an
// unlabelled superblock encodes to now, so it decodes, with no label.
TEST(Superblock, SuperblockFromBeforeLabelsDecodesWithEmptyLabel) {
  Superblock sb = sample_superblock(100000);
  sb.label = "x";
  Block b;
  encode_superblock(b.data(), sb, kSuperblockA);
  b[208] = 0;  // what an older mkfs wrote there, re-sealed as it would have
  put_le64(&b[kBlockSize - 8], block_checksum(kSuperblockA, b.data(), kBlockSize - 8));
  std::string why;
  auto got = decode_superblock(b.data(), kSuperblockA, 100000, &why);
  ASSERT_TRUE(got.ok()) << why;
  EXPECT_EQ(got->label, "");
  EXPECT_EQ(got->mount_count, 42u);
}

TEST(Superblock, LabelIsCutTo63BytesAndDecodingNeverRunsPastTheField) {
  Superblock sb = sample_superblock(100000);
  sb.label = std::string(70, 'L');
  Block b;
  encode_superblock(b.data(), sb, kSuperblockA);
  EXPECT_EQ(b[208 + kLabelMaxBytes], 0) << "the field keeps a terminating NUL";
  std::string why;
  auto got = decode_superblock(b.data(), kSuperblockA, 100000, &why);
  ASSERT_TRUE(got.ok()) << why;
  EXPECT_EQ(got->label, std::string(kLabelMaxBytes, 'L'));

  // A field with no NUL at all (a buggy writer; the checksum is valid):
  // the label is the first 63 bytes, never what follows the field.
  for (size_t i = 208; i < 208 + 64 + 16; i++) b[i] = 'M';
  put_le64(&b[kBlockSize - 8], block_checksum(kSuperblockA, b.data(), kBlockSize - 8));
  got = decode_superblock(b.data(), kSuperblockA, 100000, &why);
  ASSERT_TRUE(got.ok()) << why;
  EXPECT_EQ(got->label, std::string(kLabelMaxBytes, 'M'));
}

TEST(Superblock, AnyFlippedByteIsEuclean) {
  Superblock sb = sample_superblock(100000);
  Block good;
  encode_superblock(good.data(), sb, kSuperblockA);
  for (size_t i = 0; i < kBlockSize; i++) {
    Block b = good;
    b[i] ^= 0x01;
    auto got = decode_superblock(b.data(), kSuperblockA, 100000, nullptr);
    ASSERT_FALSE(got.ok()) << "flip at byte " << i << " went unnoticed";
    ASSERT_EQ(got.error(), EUCLEAN);
  }
}

TEST(Superblock, CopyAReadAsCopyBIsEuclean) {
  Block b;
  encode_superblock(b.data(), sample_superblock(100000), kSuperblockA);
  std::string why;
  auto got = decode_superblock(b.data(), kSuperblockB, 100000, &why);
  EXPECT_EQ(got.error(), EUCLEAN);
  EXPECT_FALSE(why.empty());
}

TEST(Superblock, TruncatedDeviceIsEucleanAndSaysSo) {
  Block b;
  encode_superblock(b.data(), sample_superblock(100000), kSuperblockB);
  std::string why;
  auto got = decode_superblock(b.data(), kSuperblockB, 99999, &why);
  EXPECT_EQ(got.error(), EUCLEAN);
  EXPECT_NE(why.find("truncated"), std::string::npos) << why;
  // A larger device is fine (the filesystem may not fill it), and 0 skips
  // the size check.
  EXPECT_TRUE(decode_superblock(b.data(), kSuperblockB, 200000, nullptr).ok());
  EXPECT_TRUE(decode_superblock(b.data(), kSuperblockB, 0, nullptr).ok());
}

TEST(Superblock, ValidlyChecksummedButInconsistentGeometryIsEuclean) {
  // A bug or a malicious image can carry a correct checksum over nonsense.
  struct Case {
    const char* name;
    void (*mutate)(Superblock&);
  };
  const Case cases[] = {
      {"journal overlaps data", [](Superblock& s) { s.journal_blocks += 1; }},
      {"inode table moved", [](Superblock& s) { s.inode_table_start += 1; }},
      {"too many inodes", [](Superblock& s) { s.inode_count *= 2; }},
      {"tail beyond journal", [](Superblock& s) { s.journal_tail = s.journal_blocks; }},
      {"wrong root", [](Superblock& s) { s.root_ino = 2; }},
      {"wrong block size", [](Superblock& s) { s.block_size = 8192; }},
      {"future version", [](Superblock& s) { s.version = kFormatVersion + 1; }},
      {"unknown incompat feature", [](Superblock& s) { s.incompat = 1u << 31; }},
      {"size below minimum", [](Superblock& s) { s.total_blocks = kMinBlocks - 1; }},
      // Neither clean nor mounted: a mount that took it for clean would
      // skip orphan cleanup (the mount fuzzer found this).
      {"unknown state", [](Superblock& s) { s.state = 0x0002'0000 | kStateMounted; }},
      {"state zero", [](Superblock& s) { s.state = 0; }},
  };
  for (const Case& c : cases) {
    Superblock sb = sample_superblock(100000);
    c.mutate(sb);
    Block b;
    encode_superblock(b.data(), sb, kSuperblockA);
    std::string why;
    auto got = decode_superblock(b.data(), kSuperblockA, 0, &why);
    EXPECT_EQ(got.error(), EUCLEAN) << c.name;
    EXPECT_FALSE(why.empty()) << c.name;
  }
}

TEST(Superblock, ZeroedBlockIsNotAFilesystem) {
  Block b{};
  std::string why;
  EXPECT_EQ(decode_superblock(b.data(), kSuperblockA, 0, &why).error(), EUCLEAN);
  EXPECT_NE(why.find("magic"), std::string::npos) << why;
}

// ---- layout ----

TEST(PlanLayout, RegionsAreOrderedDisjointSizedAndInsideTheDevice) {
  for (uint64_t total : {kMinBlocks, uint64_t(5000), uint64_t(65536), uint64_t(1) << 20,
                         uint64_t(3) << 28, uint64_t(1) << 40}) {
    SCOPED_TRACE(total);
    auto plan = plan_layout(total);
    ASSERT_TRUE(plan.ok());
    const Superblock& s = *plan;
    struct Region {
      uint64_t start, blocks;
    };
    const Region regions[] = {
        {s.inode_bitmap_start, s.inode_bitmap_blocks}, {s.block_bitmap_start, s.block_bitmap_blocks},
        {s.inode_table_start, s.inode_table_blocks},   {s.csum_table_start, s.csum_table_blocks},
        {s.journal_start, s.journal_blocks},
    };
    uint64_t next = kSuperblockB + 1;  // both superblocks come first
    for (const Region& r : regions) {
      EXPECT_GE(r.start, next);
      EXPECT_GT(r.blocks, 0u);
      next = r.start + r.blocks;
    }
    EXPECT_LE(next, s.data_start);
    EXPECT_LT(s.data_start, total);
    EXPECT_EQ(s.total_blocks, total);
    // Each region is big enough for what it indexes.
    EXPECT_GE(s.inode_bitmap_blocks * kBitsPerBitmapBlock, s.inode_count + 1);
    EXPECT_GE(s.block_bitmap_blocks * kBitsPerBitmapBlock, total);
    EXPECT_EQ(s.inode_table_blocks * kInodesPerBlock, s.inode_count);
    EXPECT_GE(s.csum_table_blocks * kChecksumsPerBlock, total);
    // And every planned geometry is one decode_superblock accepts.
    Block b;
    encode_superblock(b.data(), s, kSuperblockA);
    EXPECT_TRUE(decode_superblock(b.data(), kSuperblockA, total, nullptr).ok());
  }
}

TEST(PlanLayout, TooSmallIsEnospcAndTooLargeIsRefused) {
  EXPECT_EQ(plan_layout(0).error(), ENOSPC);
  EXPECT_EQ(plan_layout(kMinBlocks - 1).error(), ENOSPC);
  EXPECT_FALSE(plan_layout(~0ull).ok());
}

// ---- metadata block header ----

Block sealed_block(uint32_t magic, uint64_t blocknr, uint64_t txid) {
  Block b{};
  for (size_t i = kMetaHeaderSize; i < kBlockSize; i++) b[i] = uint8_t(i * 7 + 3);
  MetaHeader h;
  h.magic = magic;
  h.owner = 77;
  encode_meta_header(b.data(), h);
  seal_meta_block(b.data(), blocknr, txid);
  return b;
}

TEST(MetaBlock, SealThenVerifyRoundTrip) {
  Block b = sealed_block(kMagicDirectory, 1234, 56);
  std::string why;
  EXPECT_TRUE(verify_meta_block(b.data(), 1234, kMagicDirectory, &why).ok()) << why;
  EXPECT_TRUE(verify_meta_block(b.data(), 1234, 0, &why).ok()) << why;  // any magic
  MetaHeader h = decode_meta_header(b.data());
  EXPECT_EQ(h.magic, uint32_t(kMagicDirectory));
  EXPECT_EQ(h.blocknr, 1234u);
  EXPECT_EQ(h.txid, 56u);
  EXPECT_EQ(h.owner, 77u);
  EXPECT_EQ(h.checksum, compute_meta_checksum(b.data(), 1234));
  EXPECT_EQ(get_le32(&b[4]), kMetaHeaderVersion);
}

TEST(MetaBlock, AnyFlippedByteIsEuclean) {
  Block good = sealed_block(kMagicInodeTable, 9, 1);
  for (size_t i = 0; i < kBlockSize; i++) {
    Block b = good;
    b[i] ^= 0x80;
    ASSERT_EQ(verify_meta_block(b.data(), 9, kMagicInodeTable).error(), EUCLEAN)
        << "flip at byte " << i;
  }
}

TEST(MetaBlock, MisdirectedWriteIsEuclean) {
  Block b = sealed_block(kMagicExtentLeaf, 500, 3);
  std::string why;
  EXPECT_EQ(verify_meta_block(b.data(), 501, kMagicExtentLeaf, &why).error(), EUCLEAN);
  EXPECT_NE(why.find("misdirected"), std::string::npos) << why;
  // Even if the header's blocknr is rewritten to match, the checksum is
  // seeded with the real block number and catches it.
  put_le64(&b[8], 501);
  EXPECT_EQ(verify_meta_block(b.data(), 501, kMagicExtentLeaf).error(), EUCLEAN);
}

TEST(MetaBlock, WrongMagicIsEuclean) {
  Block b = sealed_block(kMagicBlockBitmap, 2, 1);
  std::string why;
  EXPECT_EQ(verify_meta_block(b.data(), 2, kMagicInodeBitmap, &why).error(), EUCLEAN);
  EXPECT_NE(why.find("magic"), std::string::npos) << why;
}

TEST(MetaBlock, ZeroedBlockIsEuclean) {
  Block b{};
  EXPECT_EQ(verify_meta_block(b.data(), 0, 0).error(), EUCLEAN);
}

// ---- inodes ----

TEST(Inode, EncodeDecodeRoundTripKeepsEveryField) {
  DiskInode n;
  n.mode = 0100644;
  n.uid = 1000;
  n.gid = 2000;
  n.nlink = 3;
  n.size = 0x123456789ABCull;
  n.atime = {-5, 999999999};
  n.mtime = {1700000001, 1};
  n.ctime = {1700000002, 2};
  n.btime = {int64_t(1) << 40, 3};
  n.generation = 0xDEADBEEF;
  n.flags = kInodeInlineData;
  n.blocks = 77;
  n.rdev = 0x0801;
  n.xattr_block = 4242;
  n.map_depth = 2;
  n.inline_count = 9;
  for (size_t i = 0; i < n.root.size(); i++) n.root[i] = uint8_t(255 - i);

  std::array<uint8_t, kInodeSize + 1> rec;
  rec.fill(0xCC);
  encode_inode(rec.data(), n);
  EXPECT_EQ(rec[kInodeSize], 0xCC) << "encoder wrote past the record";
  DiskInode d = decode_inode(rec.data());
  EXPECT_EQ(d.mode, n.mode);
  EXPECT_EQ(d.uid, n.uid);
  EXPECT_EQ(d.gid, n.gid);
  EXPECT_EQ(d.nlink, n.nlink);
  EXPECT_EQ(d.size, n.size);
  for (auto [a, b] : {std::pair{d.atime, n.atime}, {d.mtime, n.mtime}, {d.ctime, n.ctime},
                      {d.btime, n.btime}}) {
    EXPECT_EQ(a.sec, b.sec);
    EXPECT_EQ(a.nsec, b.nsec);
  }
  EXPECT_EQ(d.generation, n.generation);
  EXPECT_EQ(d.flags, n.flags);
  EXPECT_EQ(d.blocks, n.blocks);
  EXPECT_EQ(d.rdev, n.rdev);
  EXPECT_EQ(d.xattr_block, n.xattr_block);
  EXPECT_EQ(d.map_depth, n.map_depth);
  EXPECT_EQ(d.inline_count, n.inline_count);
  EXPECT_EQ(d.root, n.root);

  // Pin the documented record layout.
  EXPECT_EQ(get_le64(&rec[16]), n.size);
  EXPECT_EQ(int64_t(get_le64(&rec[24])), -5);
  EXPECT_EQ(get_le32(&rec[72]), n.generation);
  EXPECT_EQ(get_le64(&rec[96]), n.xattr_block);
  EXPECT_EQ(rec[104], 2);
  for (size_t i = 106; i < kInodeRootOffset; i++) EXPECT_EQ(rec[i], 0) << "byte " << i;
  EXPECT_EQ(rec[kInodeRootOffset], 255);
}

TEST(Inode, FreeSlotDecodesAsModeZero) {
  std::array<uint8_t, kInodeSize> rec{};
  DiskInode d = decode_inode(rec.data());
  EXPECT_EQ(d.mode, 0u);
  EXPECT_EQ(d.size, 0u);
}

TEST(Inode, SlotArithmeticCoversTheTable) {
  Superblock sb = *plan_layout(65536);
  EXPECT_EQ(inode_block(sb, 1), sb.inode_table_start);
  EXPECT_EQ(inode_slot(1), 0u);
  EXPECT_EQ(inode_slot(kInodesPerBlock), kInodesPerBlock - 1);
  EXPECT_EQ(inode_block(sb, kInodesPerBlock + 1), sb.inode_table_start + 1);
  EXPECT_EQ(inode_block(sb, sb.inode_count), sb.inode_table_start + sb.inode_table_blocks - 1);
  EXPECT_LE(kMetaHeaderSize + kInodesPerBlock * kInodeSize, kBlockSize);
}

}  // namespace
}  // namespace stablefs
