// stablefs on-disk format, version 1. The prose lives in docs/FORMAT.md;
// this header holds only the constants and layouts that writers and readers
// share. All fields are little-endian and fixed-width, encoded through
// core/base/endian.h.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "core/base/result.h"

namespace stablefs {

constexpr uint32_t kBlockSize = 4096;
constexpr uint32_t kFormatVersion = 1;
constexpr uint64_t kSuperMagic = 0x3130534642415453ull;  // "STABFS01"
constexpr uint64_t kSuperblockA = 0;
constexpr uint64_t kSuperblockB = 1;
constexpr uint64_t kRootIno = 1;
constexpr uint32_t kMaxNameLen = 255;

// ---- Metadata block header: first 64 bytes of every metadata block ----
// 0 u32 magic | 4 u32 header version | 8 u64 blocknr | 16 u64 txid
// 24 u64 owner inode (0 = none) | 32 u64 checksum | 40..64 zero
// checksum = XXH3-64 over the whole block with the checksum field zeroed,
// seeded with blocknr: catches torn, misdirected and stale writes.
constexpr uint32_t kMetaHeaderSize = 64;
constexpr uint32_t kMetaPayload = kBlockSize - kMetaHeaderSize;  // 4032
constexpr uint32_t kMetaHeaderVersion = 1;
constexpr uint32_t kChecksumOffset = 32;

enum BlockMagic : uint32_t {
  kMagicInodeBitmap = 0x504D4249,  // "IBMP"
  kMagicBlockBitmap = 0x504D4242,  // "BBMP"
  kMagicInodeTable = 0x444F4E49,   // "INOD"
  kMagicChecksumTable = 0x4D555343,  // "CSUM"
  kMagicDirectory = 0x42524944,    // "DIRB"
  kMagicExtentLeaf = 0x4C545845,   // "EXTL"
  kMagicExtentIndex = 0x49545845,  // "EXTI"
  kMagicXattr = 0x52544158,        // "XATR"
  kMagicXattrIndex = 0x58444958,   // "XIDX"
  kMagicXattrData = 0x54414458,    // "XDAT"
  kMagicJournalDescriptor = 0x4353444A,  // "JDSC"
  kMagicJournalCommit = 0x544D434A,      // "JCMT"
  kMagicJournalRevoke = 0x4B56524A,      // "JRVK"
  kMagicJournalDataTags = 0x5441444A,    // "JDAT"
  kMagicJournalDataBlocks = 0x4B42444A,  // "JDBK"
  kMagicJournalDelta = 0x544C444A,       // "JDLT"
};

struct MetaHeader {
  uint32_t magic = 0;
  uint64_t blocknr = 0;
  uint64_t txid = 0;
  uint64_t owner = 0;
  uint64_t checksum = 0;
};

void encode_meta_header(uint8_t* block, const MetaHeader& h);
MetaHeader decode_meta_header(const uint8_t* block);
// Recomputes and stores the header checksum over the block's current bytes.
void seal_meta_block(uint8_t* block, uint64_t blocknr, uint64_t txid);
// Checks magic, self-identifying block number, header version and checksum.
// expected_magic 0 accepts any magic. Returns EUCLEAN ("structure needs
// cleaning") with a reason in *why on mismatch.
Status verify_meta_block(const uint8_t* block, uint64_t blocknr,
                         uint32_t expected_magic, std::string* why = nullptr);
uint64_t compute_meta_checksum(const uint8_t* block, uint64_t blocknr);

// ---- Bitmaps: one bit per inode / block, payload bytes after the header ----
constexpr uint64_t kBitsPerBitmapBlock = uint64_t(kMetaPayload) * 8;  // 32256

// ---- Inode table: 15 inodes of 256 bytes per block, after the header ----
constexpr uint32_t kInodeSize = 256;
constexpr uint32_t kInodesPerBlock = kMetaPayload / kInodeSize;  // 15
constexpr uint32_t kInodeRootOffset = 112;
constexpr uint32_t kInodeRootSize = kInodeSize - kInodeRootOffset;  // 144

enum InodeFlags : uint32_t {
  kInodeInlineData = 1u << 0,  // root area holds the file bytes (short symlinks)
  // The user-visible inode flags (chattr; core/inode_flags.h maps them to
  // FS_*_FL and FS_XFLAG_*). Images from before them hold 0 here.
  kInodeImmutable = 1u << 1,  // no change at all: data, attributes, names
  kInodeAppend = 1u << 2,     // data only appended; not removed or renamed
  kInodeNodump = 1u << 3,     // dump(8) skips it; stored only
  kInodeNoatime = 1u << 4,    // reads never update atime
  kInodeSync = 1u << 5,       // a file's writes and attribute changes are synchronous
  kInodeKnownFlags = (1u << 6) - 1,
};

// Decoded inode (in-memory form of the 256-byte record).
struct Timespec {
  int64_t sec = 0;
  uint32_t nsec = 0;
};
struct DiskInode {
  uint32_t mode = 0;  // 0 = free slot
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t nlink = 0;
  uint64_t size = 0;
  Timespec atime, mtime, ctime, btime;
  uint32_t generation = 0;
  uint32_t flags = 0;
  uint64_t blocks = 0;        // mapped blocks (unwritten too) + xattr block; not tree nodes
  uint64_t rdev = 0;          // devices: the device number; directories: see parent()
  uint64_t xattr_block = 0;   // 0 = none
  uint8_t map_depth = 0;      // extent tree depth; 0 = extents inline in root
  uint8_t inline_count = 0;   // depth 0: number of inline extents in use
  std::array<uint8_t, kInodeRootSize> root{};  // extent root / inline data

  // A directory keeps its parent's inode number in the rdev field, which
  // only devices use otherwise (core/FORMAT.md); 0 there means the root.
  uint64_t parent() const { return rdev ? rdev : kRootIno; }
  void set_parent(uint64_t ino) { rdev = ino; }
};
// Record layout (offsets within the 256-byte record):
// 0 mode u32 | 4 uid | 8 gid | 12 nlink | 16 size u64
// 24 atime(sec i64,nsec u32) | 36 mtime | 48 ctime | 60 btime
// 72 generation u32 | 76 flags u32 | 80 blocks u64 | 88 rdev u64
// 96 xattr_block u64 | 104 map_depth u8 | 105 inline_count u8 | 106..112 zero
// 112..256 root area
void encode_inode(uint8_t* rec, const DiskInode& ino);
DiskInode decode_inode(const uint8_t* rec);

// ---- Extent maps ----
// Entry (16 bytes): 0 u32 logical block | 4 u32 length (bit 31 = unwritten)
// | 8 u64 physical block.
// Depth 0: up to 9 entries inline in the inode root.
// Depth d >= 1: the root holds 16 child pointers (u64, 0 = hole). Each
// level-1 node is a leaf covering kLeafSpan logical blocks; each index node
// covers kIndexFanout children. A leaf never overflows: extents are split at
// leaf boundaries and a leaf's span equals its capacity in the worst case.
constexpr uint32_t kExtentEntrySize = 16;
constexpr uint32_t kInlineExtents = kInodeRootSize / kExtentEntrySize;  // 9
constexpr uint32_t kRootPointers = 16;
constexpr uint32_t kLeafSpan = 128;
constexpr uint32_t kIndexFanout = 256;
constexpr uint32_t kMaxMapDepth = 4;
constexpr uint32_t kExtentUnwritten = 1u << 31;
// Leaf payload: 0 u64 first logical | 8 u16 count | 10..16 zero | 16.. entries
// Index payload: 0 u64 first logical | 8 u32 level | 12 zero | 16.. 256 x u64
constexpr uint32_t kNodeEntriesOffset = 16;

// ---- Checksum table: one u64 XXH3 per physical block ----
constexpr uint32_t kChecksumsPerBlock = kMetaPayload / 8;  // 504

// ---- Directory blocks ----
// Payload: records packed from offset 0: u64 ino | u8 type | u8 name_len |
// name bytes. A record with ino 0 (or the payload end) terminates the block.
constexpr uint32_t kDirRecordHeader = 10;

// d_type values stored in directory records (same numbers as <dirent.h>).
enum DirType : uint8_t {
  kTypeUnknown = 0, kTypeFifo = 1, kTypeChr = 2, kTypeDir = 4, kTypeBlk = 6,
  kTypeReg = 8, kTypeLnk = 10, kTypeSock = 12,
};

// ---- Xattr block ----
// Payload: 0 u16 count | then per entry: u8 name_len | u16 value_len | name | value
constexpr uint32_t kXattrHeader = 2;
constexpr uint32_t kXattrEntryHeader = 3;
// Limits the kernel applies before the daemon sees a request (XATTR_SIZE_MAX,
// XATTR_NAME_MAX) and the size of the whole list listxattr(2) can return
// (XATTR_LIST_MAX): a stored set never exceeds the last either.
constexpr uint32_t kXattrValueMax = 65536;
constexpr uint32_t kXattrNameMax = 255;
constexpr uint32_t kXattrListMax = 65536;

// ---- Xattr sets of several blocks (kIncompatLargeXattrs) ----
// Index (XIDX) payload: 0 u32 set_bytes | 4 u16 member_count | 6 u16 zero
// | 8 u64 set_hash (XXH3-64 of the set bytes seeded with the inode number)
// | 16.. member_count x u64 member block numbers.
// Members (XDAT): payload = bytes [i * kMetaPayload, (i + 1) * kMetaPayload)
// of the set, zero past set_bytes.
// Set bytes: 0 u32 count | then per entry: u8 name_len | u32 value_len |
// name | value, names strictly increasing.
constexpr uint32_t kXattrIndexHeader = 16;
constexpr uint32_t kXattrSetHeader = 4;
constexpr uint32_t kXattrSetEntryHeader = 5;
// 64 members: one change of a maximal set (members, index, inode, two
// bitmap blocks) is a small part of the smallest log's transaction limit,
// which the handles' credits keep them under (core/FORMAT.md).
constexpr uint32_t kXattrMaxMembers = 64;
constexpr uint32_t kXattrMaxSetBytes = kXattrMaxMembers * kMetaPayload;  // 258048

// ---- Superblock (blocks 0 and 1, identical contents) ----
enum SuperState : uint32_t { kStateClean = 1, kStateMounted = 2 };

// Incompatible features: a binary that does not know a bit set here must
// refuse the image.
enum IncompatFeatures : uint32_t {
  // The log may hold transactions committed with one flush (journal/FORMAT.md,
  // "Async commit"): their replay must verify the data blocks they tag. Set
  // while mounted read-write, cleared by a clean unmount or by fsck once the
  // log is empty, so an older binary can mount a cleanly unmounted image.
  kIncompatAsyncCommit = 1u << 0,
  // The log may hold file data blocks (journal/FORMAT.md, "Journaled
  // data"), which a binary that does not know them would stop at, losing
  // every transaction from there on. Same lifecycle as kIncompatAsyncCommit.
  kIncompatJournalData = 1u << 1,
  // Lazy initialisation (core/FORMAT.md, "Lazy initialisation"): only the
  // parts of the inode table, bitmaps and checksum table below the
  // superblock's high-water marks were ever written; the rest is free by
  // definition and may hold anything. A binary that does not know this
  // would read those blocks as corrupt, so the bit stays set for life.
  kIncompatLazyInit = 1u << 2,
  // The log may hold delta records (journal/FORMAT.md, "Deltas"): metadata
  // blocks logged as the bytes changed since their previous logged version.
  // Same lifecycle as kIncompatAsyncCommit.
  kIncompatJournalDeltas = 1u << 3,
  // An inode's xattr block may be an index of several blocks (core/FORMAT.md,
  // "Xattr sets of several blocks"), which a binary that does not know it
  // would read as a corrupt xattr block. Set before the first such set is
  // stored and kept for life.
  kIncompatLargeXattrs = 1u << 4,
};
constexpr uint32_t kIncompatSupported = kIncompatAsyncCommit | kIncompatJournalData |
                                        kIncompatLazyInit | kIncompatJournalDeltas |
                                        kIncompatLargeXattrs;
// The bits that only say what the log may hold: cleared once it is empty.
constexpr uint32_t kIncompatLogFeatures =
    kIncompatAsyncCommit | kIncompatJournalData | kIncompatJournalDeltas;

struct Superblock {
  uint32_t version = kFormatVersion;
  uint32_t compat = 0, incompat = 0, ro_compat = 0;
  std::array<uint8_t, 16> uuid{};
  uint32_t block_size = kBlockSize;
  uint64_t total_blocks = 0;
  uint64_t inode_count = 0;
  uint64_t inode_bitmap_start = 0, inode_bitmap_blocks = 0;
  uint64_t block_bitmap_start = 0, block_bitmap_blocks = 0;
  uint64_t inode_table_start = 0, inode_table_blocks = 0;
  uint64_t csum_table_start = 0, csum_table_blocks = 0;
  uint64_t journal_start = 0, journal_blocks = 0;
  uint64_t data_start = 0;
  uint64_t root_ino = kRootIno;
  uint64_t journal_tail = 0;       // log offset of the oldest live transaction
  uint64_t journal_tail_txid = 1;  // txid expected at journal_tail
  uint64_t sequence = 0;           // bumped on every superblock write
  uint32_t state = kStateClean;
  uint64_t mkfs_time = 0;
  uint64_t mount_count = 0;
  // Set by mkfs -L; "" when none. Images made before the field existed
  // hold zeros there, which is the empty label (core/FORMAT.md).
  std::string label;
  // High-water marks (kIncompatLazyInit): inodes 1..inode_hwm and blocks
  // 0..block_hwm-1 are covered by initialised metadata; everything above is
  // free. Without the feature the decoder sets them to the whole device.
  uint64_t inode_hwm = 0;
  uint64_t block_hwm = 0;
};
// The label field: at most 63 bytes, NUL-padded to 64.
constexpr size_t kLabelMaxBytes = 63;
// Layout: 0 u64 magic | 8 u32 version | 12 compat | 16 incompat | 20 ro_compat
// 24 uuid[16] | 40 u32 block_size | 44 zero | 48 total_blocks | 56 inode_count
// 64 ibmp start | 72 ibmp blocks | 80 bbmp start | 88 bbmp blocks
// 96 itable start | 104 itable blocks | 112 csum start | 120 csum blocks
// 128 journal start | 136 journal blocks | 144 data_start | 152 root_ino
// 160 journal_tail | 168 journal_tail_txid | 176 sequence | 184 u32 state
// 188 zero | 192 mkfs_time | 200 mount_count | 208 label[64] (NUL-padded)
// 272 inode_hwm | 280 block_hwm (both 0 unless kIncompatLazyInit) | ... zero ...
// 4088 u64 checksum: XXH3-64 over bytes [0, 4088) seeded with the block number.
void encode_superblock(uint8_t* block, const Superblock& sb, uint64_t blocknr);
// Validates magic, version, checksum and geometry (every region inside the
// device, regions in order and non-overlapping). device_blocks 0 skips the
// size check. EUCLEAN + reason on failure.
Result<Superblock> decode_superblock(const uint8_t* block, uint64_t blocknr,
                                     uint64_t device_blocks, std::string* why);

// Geometry for a new filesystem of total_blocks blocks.
Result<Superblock> plan_layout(uint64_t total_blocks);
constexpr uint64_t kMinBlocks = 4096;  // 16 MiB

// The metadata blocks the high-water marks say were initialised, region by
// region: [first, first + count). Blocks of a region outside its range were
// never written (kIncompatLazyInit) and are never read.
struct BlockSpan {
  uint64_t first = 0, count = 0;
  uint64_t end() const { return first + count; }
};
struct InitialisedSpans {
  BlockSpan inode_bitmap, block_bitmap, inode_table, csum_table;
};
InitialisedSpans initialised_spans(const Superblock& sb);

inline uint64_t inode_block(const Superblock& sb, uint64_t ino) {
  return sb.inode_table_start + (ino - 1) / kInodesPerBlock;
}
inline uint32_t inode_slot(uint64_t ino) { return uint32_t((ino - 1) % kInodesPerBlock); }

}  // namespace stablefs
