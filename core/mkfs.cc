#include "core/mkfs.h"

#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "core/base/endian.h"
#include "core/base/format.h"
#include "journal/buffer.h"

namespace stablefs {
namespace {

constexpr uint64_t kChunk = 64;  // blocks per write request

class RegionWriter {
 public:
  RegionWriter(BlockDevice& dev, const MkfsOptions& opts, uint64_t total)
      : dev_(dev), opts_(opts), total_(total) {
    for (auto& b : bufs_) b = std::make_unique<AlignedBlock>();
  }

  // Writes blocks [start, start+count), each filled by fill(block, blocknr).
  template <class Fill>
  Status write_region(uint64_t start, uint64_t count, Fill fill) {
    for (uint64_t done = 0; done < count;) {
      uint64_t n = std::min(kChunk, count - done);
      IoRequest r;
      r.op = IoOp::kWrite;
      r.blocknr = start + done;
      for (uint64_t i = 0; i < n; i++) {
        uint8_t* p = bufs_[i]->data();
        std::memset(p, 0, kBlockSize);
        fill(p, start + done + i);
        r.add(p, kBlockSize);
      }
      IoRequest* rs[] = {&r};
      SFS_TRY(dev_.submit_and_wait(rs));
      done += n;
      written_ += n;
      if (opts_.progress) opts_.progress(written_, total_);
    }
    return Status::Ok();
  }

 private:
  BlockDevice& dev_;
  const MkfsOptions& opts_;
  uint64_t total_;
  uint64_t written_ = 0;
  std::unique_ptr<AlignedBlock> bufs_[kChunk];
};

Timespec now() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return Timespec{ts.tv_sec, uint32_t(ts.tv_nsec)};
}

void set_bit(uint8_t* payload, uint64_t bit) { payload[bit / 8] |= uint8_t(1u << (bit % 8)); }

}  // namespace

Status make_filesystem(BlockDevice& dev, const MkfsOptions& opts) {
  auto plan = plan_layout(dev.block_count());
  if (!plan.ok()) return Error{plan.error()};
  Superblock sb = *plan;
  if (opts.label.size() > kLabelMaxBytes) return err(EINVAL);
  sb.label = opts.label;

  std::random_device rd;
  if (opts.uuid)
    sb.uuid = *opts.uuid;
  else
    for (auto& b : sb.uuid) b = uint8_t(rd());
  // A random first txid: a journal left over from an earlier filesystem on
  // this device can never be mistaken for ours, even if zeroing it failed.
  sb.journal_tail_txid = (uint64_t(rd()) << 16 | 1) & 0xffffffffffull;
  sb.journal_tail = 0;
  sb.state = kStateClean;
  sb.mkfs_time = uint64_t(std::chrono::system_clock::to_time_t(std::chrono::system_clock::now()));

  uint64_t total = sb.inode_bitmap_blocks + sb.block_bitmap_blocks + sb.inode_table_blocks +
                   sb.csum_table_blocks + sb.journal_blocks + 2;
  RegionWriter w(dev, opts, total);

  auto seal = [](uint8_t* p, uint64_t blocknr, uint32_t magic) {
    MetaHeader h;
    h.magic = magic;
    h.blocknr = blocknr;
    encode_meta_header(p, h);
    seal_meta_block(p, blocknr, 0);
  };

  // Inode bitmap: bit 0 is reserved, bit 1 is the root directory.
  SFS_TRY(w.write_region(sb.inode_bitmap_start, sb.inode_bitmap_blocks,
                         [&](uint8_t* p, uint64_t b) {
                           uint64_t first_bit = (b - sb.inode_bitmap_start) * kBitsPerBitmapBlock;
                           for (uint64_t bit : {uint64_t(0), kRootIno})
                             if (bit >= first_bit && bit < first_bit + kBitsPerBitmapBlock)
                               set_bit(p + kMetaHeaderSize, bit - first_bit);
                           seal(p, b, kMagicInodeBitmap);
                         }));
  // Block bitmap: every block before data_start is in use.
  SFS_TRY(w.write_region(sb.block_bitmap_start, sb.block_bitmap_blocks,
                         [&](uint8_t* p, uint64_t b) {
                           uint64_t first_bit = (b - sb.block_bitmap_start) * kBitsPerBitmapBlock;
                           for (uint64_t i = 0; i < kBitsPerBitmapBlock; i++) {
                             uint64_t bit = first_bit + i;
                             if (bit >= sb.data_start) break;
                             set_bit(p + kMetaHeaderSize, i);
                           }
                           seal(p, b, kMagicBlockBitmap);
                         }));
  // Inode table: all free except the root directory.
  Timespec t = now();
  SFS_TRY(w.write_region(sb.inode_table_start, sb.inode_table_blocks,
                         [&](uint8_t* p, uint64_t b) {
                           if (b == inode_block(sb, kRootIno)) {
                             DiskInode root;
                             root.mode = S_IFDIR | 0755;
                             root.nlink = 2;
                             root.atime = root.mtime = root.ctime = root.btime = t;
                             root.generation = 1;
                             encode_inode(p + kMetaHeaderSize + inode_slot(kRootIno) * kInodeSize,
                                          root);
                           }
                           seal(p, b, kMagicInodeTable);
                         }));
  SFS_TRY(w.write_region(sb.csum_table_start, sb.csum_table_blocks,
                         [&](uint8_t* p, uint64_t b) { seal(p, b, kMagicChecksumTable); }));
  SFS_TRY(w.write_region(sb.journal_start, sb.journal_blocks, [](uint8_t*, uint64_t) {}));
  SFS_TRY(dev.flush());

  // Superblocks last: until they are durable the device is not a stablefs.
  for (uint64_t blocknr : {kSuperblockA, kSuperblockB}) {
    SFS_TRY(w.write_region(blocknr, 1, [&](uint8_t* p, uint64_t b) { encode_superblock(p, sb, b); }));
    SFS_TRY(dev.flush());
  }
  return Status::Ok();
}

}  // namespace stablefs
