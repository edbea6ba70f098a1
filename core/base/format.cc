#include "core/base/format.h"

#include <algorithm>
#include <cstring>

#include "core/base/checksum.h"
#include "core/base/endian.h"

namespace stablefs {

void encode_meta_header(uint8_t* block, const MetaHeader& h) {
  Encoder e(block, kMetaHeaderSize);
  e.u32(h.magic);
  e.u32(kMetaHeaderVersion);
  e.u64(h.blocknr);
  e.u64(h.txid);
  e.u64(h.owner);
  e.u64(h.checksum);
  e.skip(kMetaHeaderSize - e.pos());
}

MetaHeader decode_meta_header(const uint8_t* block) {
  MetaHeader h;
  h.magic = get_le32(block);
  h.blocknr = get_le64(block + 8);
  h.txid = get_le64(block + 16);
  h.owner = get_le64(block + 24);
  h.checksum = get_le64(block + kChecksumOffset);
  return h;
}

uint64_t compute_meta_checksum(const uint8_t* block, uint64_t blocknr) {
  // Hash with the checksum field treated as zero, without copying the block.
  uint8_t head[kChecksumOffset + 8];
  std::memcpy(head, block, kChecksumOffset);
  std::memset(head + kChecksumOffset, 0, 8);
  uint64_t h1 = block_checksum(blocknr, head, sizeof(head));
  return block_checksum(h1, block + sizeof(head), kBlockSize - sizeof(head));
}

void seal_meta_block(uint8_t* block, uint64_t blocknr, uint64_t txid) {
  put_le64(block + 8, blocknr);
  put_le64(block + 16, txid);
  put_le64(block + kChecksumOffset, compute_meta_checksum(block, blocknr));
}

Status verify_meta_block(const uint8_t* block, uint64_t blocknr, uint32_t expected_magic,
                         std::string* why) {
  auto fail = [&](std::string reason) {
    if (why) *why = std::move(reason);
    return Status(err(EUCLEAN));
  };
  MetaHeader h = decode_meta_header(block);
  if (expected_magic != 0 && h.magic != expected_magic)
    return fail("wrong magic " + std::to_string(h.magic) + " (expected " +
                std::to_string(expected_magic) + ")");
  if (get_le32(block + 4) != kMetaHeaderVersion) return fail("unknown header version");
  if (h.blocknr != blocknr)
    return fail("misdirected: header names block " + std::to_string(h.blocknr));
  uint64_t actual = compute_meta_checksum(block, blocknr);
  if (actual != h.checksum)
    return fail("checksum mismatch: stored " + std::to_string(h.checksum) + ", computed " +
                std::to_string(actual));
  return Status::Ok();
}

void encode_inode(uint8_t* rec, const DiskInode& n) {
  Encoder e(rec, kInodeSize);
  e.u32(n.mode);
  e.u32(n.uid);
  e.u32(n.gid);
  e.u32(n.nlink);
  e.u64(n.size);
  for (const Timespec* t : {&n.atime, &n.mtime, &n.ctime, &n.btime}) {
    e.u64(uint64_t(t->sec));
    e.u32(t->nsec);
  }
  e.u32(n.generation);
  e.u32(n.flags);
  e.u64(n.blocks);
  e.u64(n.rdev);
  e.u64(n.xattr_block);
  e.u8(n.map_depth);
  e.u8(n.inline_count);
  e.skip(kInodeRootOffset - e.pos());
  e.bytes(n.root.data(), n.root.size());
}

DiskInode decode_inode(const uint8_t* rec) {
  Decoder d(rec, kInodeSize);
  DiskInode n;
  n.mode = d.u32();
  n.uid = d.u32();
  n.gid = d.u32();
  n.nlink = d.u32();
  n.size = d.u64();
  for (Timespec* t : {&n.atime, &n.mtime, &n.ctime, &n.btime}) {
    t->sec = int64_t(d.u64());
    t->nsec = d.u32();
  }
  n.generation = d.u32();
  n.flags = d.u32();
  n.blocks = d.u64();
  n.rdev = d.u64();
  n.xattr_block = d.u64();
  n.map_depth = d.u8();
  n.inline_count = d.u8();
  d.skip(kInodeRootOffset - d.pos());
  d.bytes(n.root.data(), n.root.size());
  return n;
}

namespace {
constexpr size_t kHwmOffset = 272;  // after the label field (208 + 64)
}  // namespace

void encode_superblock(uint8_t* block, const Superblock& sb, uint64_t blocknr) {
  std::memset(block, 0, kBlockSize);
  Encoder e(block, kBlockSize);
  e.u64(kSuperMagic);
  e.u32(sb.version);
  e.u32(sb.compat);
  e.u32(sb.incompat);
  e.u32(sb.ro_compat);
  e.bytes(sb.uuid.data(), sb.uuid.size());
  e.u32(sb.block_size);
  e.u32(0);
  for (uint64_t v : {sb.total_blocks, sb.inode_count, sb.inode_bitmap_start,
                     sb.inode_bitmap_blocks, sb.block_bitmap_start, sb.block_bitmap_blocks,
                     sb.inode_table_start, sb.inode_table_blocks, sb.csum_table_start,
                     sb.csum_table_blocks, sb.journal_start, sb.journal_blocks, sb.data_start,
                     sb.root_ino, sb.journal_tail, sb.journal_tail_txid, sb.sequence})
    e.u64(v);
  e.u32(sb.state);
  e.u32(0);
  e.u64(sb.mkfs_time);
  e.u64(sb.mount_count);
  // Longer labels are cut (mkfs refuses them before it gets here); the
  // last byte stays NUL, so a reader never runs off the field.
  e.bytes(sb.label.data(), std::min(sb.label.size(), kLabelMaxBytes));
  if (sb.incompat & kIncompatLazyInit) {
    put_le64(block + kHwmOffset, sb.inode_hwm);
    put_le64(block + kHwmOffset + 8, sb.block_hwm);
  }
  put_le64(block + kBlockSize - 8, block_checksum(blocknr, block, kBlockSize - 8));
}

Result<Superblock> decode_superblock(const uint8_t* block, uint64_t blocknr,
                                     uint64_t device_blocks, std::string* why) {
  auto fail = [&](std::string reason) -> Result<Superblock> {
    if (why) *why = std::move(reason);
    return err(EUCLEAN);
  };
  Decoder d(block, kBlockSize);
  if (d.u64() != kSuperMagic) return fail("not a stablefs superblock (bad magic)");
  uint64_t stored = get_le64(block + kBlockSize - 8);
  if (stored != block_checksum(blocknr, block, kBlockSize - 8))
    return fail("superblock checksum mismatch");
  Superblock sb;
  sb.version = d.u32();
  sb.compat = d.u32();
  sb.incompat = d.u32();
  sb.ro_compat = d.u32();
  if (sb.version != kFormatVersion)
    return fail("unsupported format version " + std::to_string(sb.version));
  if (sb.incompat & ~kIncompatSupported) return fail("unsupported incompatible features");
  d.bytes(sb.uuid.data(), sb.uuid.size());
  sb.block_size = d.u32();
  d.u32();
  for (uint64_t* v : {&sb.total_blocks, &sb.inode_count, &sb.inode_bitmap_start,
                      &sb.inode_bitmap_blocks, &sb.block_bitmap_start, &sb.block_bitmap_blocks,
                      &sb.inode_table_start, &sb.inode_table_blocks, &sb.csum_table_start,
                      &sb.csum_table_blocks, &sb.journal_start, &sb.journal_blocks,
                      &sb.data_start, &sb.root_ino, &sb.journal_tail, &sb.journal_tail_txid,
                      &sb.sequence})
    *v = d.u64();
  sb.state = d.u32();
  d.u32();
  sb.mkfs_time = d.u64();
  sb.mount_count = d.u64();
  char label[kLabelMaxBytes + 1];
  d.bytes(label, sizeof label);
  sb.label.assign(label, strnlen(label, kLabelMaxBytes));

  // Geometry must be exactly what plan_layout would produce for this size;
  // anything else means corruption, and trusting it could index out of bounds.
  if (sb.block_size != kBlockSize) return fail("unsupported block size");
  if (device_blocks != 0 && sb.total_blocks > device_blocks)
    return fail("image is truncated: superblock says " + std::to_string(sb.total_blocks) +
                " blocks, device has " + std::to_string(device_blocks));
  auto plan = plan_layout(sb.total_blocks);
  if (!plan.ok()) return fail("invalid filesystem size in superblock");
  const Superblock& p = *plan;
  if (p.inode_count != sb.inode_count || p.inode_bitmap_start != sb.inode_bitmap_start ||
      p.inode_bitmap_blocks != sb.inode_bitmap_blocks ||
      p.block_bitmap_start != sb.block_bitmap_start ||
      p.block_bitmap_blocks != sb.block_bitmap_blocks ||
      p.inode_table_start != sb.inode_table_start ||
      p.inode_table_blocks != sb.inode_table_blocks ||
      p.csum_table_start != sb.csum_table_start || p.csum_table_blocks != sb.csum_table_blocks ||
      p.journal_start != sb.journal_start || p.journal_blocks != sb.journal_blocks ||
      p.data_start != sb.data_start || sb.root_ino != kRootIno)
    return fail("superblock geometry is inconsistent");
  if (sb.journal_tail >= sb.journal_blocks) return fail("journal tail out of range");
  // Only these two: a mount decides from it whether orphans need freeing.
  if (sb.state != kStateClean && sb.state != kStateMounted)
    return fail("unknown state " + std::to_string(sb.state));
  if (sb.incompat & kIncompatLazyInit) {
    sb.inode_hwm = get_le64(block + kHwmOffset);
    sb.block_hwm = get_le64(block + kHwmOffset + 8);
    if (sb.inode_hwm < kRootIno || sb.inode_hwm > sb.inode_count)
      return fail("inode high-water mark " + std::to_string(sb.inode_hwm) + " out of range");
    if (sb.block_hwm < sb.data_start || sb.block_hwm > sb.total_blocks)
      return fail("block high-water mark " + std::to_string(sb.block_hwm) + " out of range");
  } else {
    // An image made before lazy initialisation: all of it was written.
    sb.inode_hwm = sb.inode_count;
    sb.block_hwm = sb.total_blocks;
  }
  return sb;
}

InitialisedSpans initialised_spans(const Superblock& sb) {
  auto div_up = [](uint64_t a, uint64_t b) { return (a + b - 1) / b; };
  InitialisedSpans s;
  // Bit 0 of the inode bitmap is reserved, so inode n is bit n.
  s.inode_bitmap = {sb.inode_bitmap_start, div_up(sb.inode_hwm + 1, kBitsPerBitmapBlock)};
  s.block_bitmap = {sb.block_bitmap_start, div_up(sb.block_hwm, kBitsPerBitmapBlock)};
  s.inode_table = {sb.inode_table_start, div_up(sb.inode_hwm, kInodesPerBlock)};
  // Checksum entries of metadata blocks are never used: a lazy table
  // starts at the entry of data_start. Older images have all of it.
  uint64_t first = sb.incompat & kIncompatLazyInit ? sb.data_start / kChecksumsPerBlock : 0;
  s.csum_table = {sb.csum_table_start + first, div_up(sb.block_hwm, kChecksumsPerBlock) - first};
  return s;
}

Result<Superblock> plan_layout(uint64_t total_blocks) {
  if (total_blocks < kMinBlocks) return err(ENOSPC);
  // Block numbers in extents are u64, but logical file blocks are u32, and
  // we keep the device under 2^48 blocks so bitmap math never overflows.
  if (total_blocks > (1ull << 40)) return err(EFBIG);
  auto div_up = [](uint64_t a, uint64_t b) { return (a + b - 1) / b; };
  Superblock sb;
  sb.total_blocks = total_blocks;
  // One inode per 16 KiB, a whole number of inode-table blocks.
  uint64_t inodes = std::max<uint64_t>(total_blocks / 4, 1024);
  inodes = std::min<uint64_t>(inodes, uint64_t(1) << 32);
  sb.inode_count = div_up(inodes, kInodesPerBlock) * kInodesPerBlock;
  uint64_t next = 2;
  sb.inode_bitmap_start = next;
  sb.inode_bitmap_blocks = div_up(sb.inode_count + 1, kBitsPerBitmapBlock);
  next += sb.inode_bitmap_blocks;
  sb.block_bitmap_start = next;
  sb.block_bitmap_blocks = div_up(total_blocks, kBitsPerBitmapBlock);
  next += sb.block_bitmap_blocks;
  sb.inode_table_start = next;
  sb.inode_table_blocks = sb.inode_count / kInodesPerBlock;
  next += sb.inode_table_blocks;
  sb.csum_table_start = next;
  sb.csum_table_blocks = div_up(total_blocks, kChecksumsPerBlock);
  next += sb.csum_table_blocks;
  sb.journal_start = next;
  sb.journal_blocks = std::clamp<uint64_t>(total_blocks / 64, 1024, 32768);
  next += sb.journal_blocks;
  sb.data_start = next;
  // Everything initialised: make_filesystem lowers the marks when it sets
  // kIncompatLazyInit.
  sb.inode_hwm = sb.inode_count;
  sb.block_hwm = total_blocks;
  // Leave room for at least a few hundred data blocks.
  if (sb.data_start + 256 > total_blocks) return err(ENOSPC);
  return sb;
}

}  // namespace stablefs
