#include "core/mkfs.h"

#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "core/base/endian.h"
#include "core/base/format.h"
#include "core/lazy_init.h"
#include "journal/buffer.h"

namespace stablefs {
namespace {

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

  if (opts.lazy_init) {
    // Only what the marks cover is written (core/lazy_init.h); the rest
    // of the inode table, bitmaps and checksum table is free by definition.
    sb.incompat |= kIncompatLazyInit;
    uint64_t inodes = opts.initial_inodes ? opts.initial_inodes : kLazyInodeStep;
    sb.inode_hwm = std::min(sb.inode_count,
                            (inodes + kInodesPerBlock - 1) / kInodesPerBlock * kInodesPerBlock);
    uint64_t blocks = opts.initial_data_blocks ? opts.initial_data_blocks : kLazyBlockStep;
    sb.block_hwm = std::min(sb.total_blocks, sb.data_start + blocks);
  }
  const InitialisedSpans spans = initialised_spans(sb);
  uint64_t total = spans.inode_bitmap.count + spans.block_bitmap.count +
                   spans.inode_table.count + spans.csum_table.count + sb.journal_blocks + 2;
  RegionWriter w(dev, opts.progress, total);
  auto seal = seal_fresh_block;

  // Inode bitmap: bit 0 is reserved, bit 1 is the root directory.
  SFS_TRY(w.write_region(spans.inode_bitmap.first, spans.inode_bitmap.count,
                         [&](uint8_t* p, uint64_t b) {
                           uint64_t first_bit = (b - sb.inode_bitmap_start) * kBitsPerBitmapBlock;
                           for (uint64_t bit : {uint64_t(0), kRootIno})
                             if (bit >= first_bit && bit < first_bit + kBitsPerBitmapBlock)
                               set_bit(p + kMetaHeaderSize, bit - first_bit);
                           seal(p, b, kMagicInodeBitmap);
                         }));
  // Block bitmap: every block before data_start is in use.
  SFS_TRY(w.write_region(spans.block_bitmap.first, spans.block_bitmap.count,
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
  SFS_TRY(w.write_region(spans.inode_table.first, spans.inode_table.count,
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
  SFS_TRY(w.write_region(spans.csum_table.first, spans.csum_table.count,
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

Status preallocate_data(BlockDevice& dev, const Superblock& sb,
                        const std::function<void(uint64_t, uint64_t)>& progress) {
  // Every segment of every request points at the same zero block; a few
  // requests in flight keep the device busy.
  constexpr size_t kInFlight = 16;
  AlignedBlock zero;
  std::memset(zero.data(), 0, kBlockSize);
  const uint64_t total = sb.total_blocks - sb.data_start;
  std::vector<IoRequest> reqs(kInFlight);
  std::vector<IoRequest*> ptrs;
  for (uint64_t done = 0; done < total;) {
    ptrs.clear();
    for (size_t i = 0; i < kInFlight && done < total; i++) {
      IoRequest& r = reqs[i];
      r = IoRequest{};
      r.op = IoOp::kWrite;
      r.blocknr = sb.data_start + done;
      uint64_t n = std::min<uint64_t>(IoRequest::kMaxSegments, total - done);
      for (uint64_t k = 0; k < n; k++) r.add(zero.data(), kBlockSize);
      ptrs.push_back(&r);
      done += n;
    }
    SFS_TRY(dev.submit_and_wait(ptrs));
    if (progress) progress(done, total);
  }
  return dev.flush();
}

}  // namespace stablefs
