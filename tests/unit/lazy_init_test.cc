// Lazy initialisation (core/lazy_init.h, core/FORMAT.md): mkfs writes only
// what the high-water marks cover, the engine raises them as it allocates,
// fsck checks what they cover and reports anything in use above them, and
// an image made with everything initialised (the old layout) still works.
// The crash side (a power cut at every flush of a raise) is in
// tests/crash/crash_sim_test.cc.
#include <sys/stat.h>

#include <string>

#include <gtest/gtest.h>

#include "core/base/format.h"
#include "core/fsck.h"
#include "core/lazy_init.h"
#include "tests/unit/engine_fixture.h"

namespace stablefs {
namespace {

class LazyInitTest : public EngineFaultTest {
 protected:
  // Marks low enough that a few files raise both: one inode-table block
  // (root plus 14 inodes) and 64 data blocks.
  static MkfsOptions low_marks() {
    MkfsOptions mo;
    mo.initial_inodes = kInodesPerBlock;
    mo.initial_data_blocks = 64;
    return mo;
  }
  // mkfs again over zeros (SetUp's image gone), as on a new sparse file.
  void remake(const MkfsOptions& mo) {
    std::vector<uint8_t> zeros(256 * kBlockSize, 0);
    for (uint64_t b = 0; b < dev_.block_count(); b += 256)
      ASSERT_TRUE(dev_.write(b, zeros.data(), zeros.size()).ok());
    ASSERT_TRUE(make_filesystem(dev_, mo).ok());
  }
  Superblock superblock() {
    std::vector<uint8_t> b = dev_.durable_block(kSuperblockA);
    std::string why;
    auto sb = decode_superblock(b.data(), kSuperblockA, dev_.block_count(), &why);
    EXPECT_TRUE(sb.ok()) << why;
    return sb.ok() ? *sb : Superblock{};
  }
  // Both superblock copies rewritten with `edit` applied (a mark moved by
  // hand: what a bug that lost a raise would leave).
  void edit_superblock(const std::function<void(Superblock&)>& edit) {
    Superblock sb = superblock();
    edit(sb);
    AlignedBlock blk;
    for (uint64_t nr : {kSuperblockA, kSuperblockB}) {
      encode_superblock(blk.data(), sb, nr);
      ASSERT_TRUE(dev_.write(nr, blk.data(), kBlockSize).ok());
    }
    ASSERT_TRUE(dev_.flush().ok());
  }
  std::string fsck_lines(uint64_t* errors) {
    FsckOptions fo;
    fo.scrub = true;
    std::string lines;
    fo.report = [&](const std::string& l) { lines += l + "\n"; };
    auto r = check_filesystem(dev_, fo);
    EXPECT_TRUE(r.ok());
    *errors = r.ok() ? r->errors : 0;
    return lines;
  }
  // `files` files of `blocks` blocks each in the root, fsync'd; returns
  // the last inode number.
  uint64_t fill(int files, int blocks) {
    uint64_t ino = 0;
    std::string data(size_t(blocks) * kBlockSize, 'x');
    for (int i = 0; i < files; i++) {
      ino = create(("f" + std::to_string(i)).c_str());
      data[0] = char('a' + i % 26);
      auto w = fs_->write(ino, 0, data.data(), data.size());
      EXPECT_TRUE(w.ok() && *w == data.size());
      EXPECT_TRUE(fs_->fsync(ino, false).ok());
    }
    return ino;
  }
};

TEST_F(LazyInitTest, MkfsWritesOnlyWhatTheMarksCover) {
  remake(low_marks());
  Superblock sb = superblock();
  EXPECT_TRUE(sb.incompat & kIncompatLazyInit);
  EXPECT_EQ(sb.inode_hwm, kInodesPerBlock);
  EXPECT_EQ(sb.block_hwm, sb.data_start + 64);
  const InitialisedSpans spans = initialised_spans(sb);
  EXPECT_EQ(spans.inode_table.count, 1u);
  // The second inode-table block and the checksum table's first block
  // (entries of metadata blocks only) were never written.
  const std::vector<uint8_t> zero(kBlockSize, 0);
  EXPECT_EQ(dev_.durable_block(sb.inode_table_start + 1), zero);
  EXPECT_EQ(dev_.durable_block(sb.csum_table_start), zero);
  EXPECT_NE(dev_.durable_block(spans.csum_table.first), zero);
  expect_fsck_clean();
}

TEST_F(LazyInitTest, AllocationRaisesBothMarksAndEverythingChecksClean) {
  remake(low_marks());
  mount();
  // 40 inodes (past the 15 under the mark) and 160 data blocks (past 64).
  uint64_t last = fill(40, 4);
  EXPECT_GT(last, uint64_t(kInodesPerBlock));
  unmount();
  Superblock sb = superblock();
  EXPECT_GT(sb.inode_hwm, uint64_t(kInodesPerBlock));
  EXPECT_GE(sb.inode_hwm, last);
  EXPECT_GT(sb.block_hwm, sb.data_start + 64);
  expect_fsck_clean();
  mount();
  EXPECT_EQ(read_back("f39"), 'n' + std::string(4 * kBlockSize - 1, 'x'));
}

TEST_F(LazyInitTest, AnImageWithEverythingInitialisedMountsAndChecksClean) {
  MkfsOptions mo;
  mo.lazy_init = false;
  remake(mo);
  Superblock sb = superblock();
  EXPECT_FALSE(sb.incompat & kIncompatLazyInit);
  EXPECT_EQ(sb.inode_hwm, sb.inode_count);
  EXPECT_EQ(sb.block_hwm, sb.total_blocks);
  // The last inode-table block was written, as before the feature.
  EXPECT_TRUE(verify_meta_block(dev_.durable_block(sb.inode_table_start + sb.inode_table_blocks - 1).data(),
                                sb.inode_table_start + sb.inode_table_blocks - 1,
                                kMagicInodeTable)
                  .ok());
  mount();
  fill(20, 2);
  unmount();
  EXPECT_FALSE(superblock().incompat & kIncompatLazyInit);
  expect_fsck_clean();
}

TEST_F(LazyInitTest, FsckReportsInodesInUseAboveTheInodeMark) {
  remake(low_marks());
  mount();
  uint64_t last = fill(20, 1);
  unmount();
  // The mark goes back below inodes the root directory names.
  edit_superblock([](Superblock& sb) { sb.inode_hwm = kInodesPerBlock; });
  uint64_t errors = 0;
  std::string lines = fsck_lines(&errors);
  EXPECT_GT(errors, 0u);
  EXPECT_NE(lines.find("points to inode " + std::to_string(last) +
                       ", above the inode high-water mark 15"),
            std::string::npos)
      << lines;
  EXPECT_NE(lines.find("inodes above the high-water mark 16 are marked in use"), std::string::npos)
      << lines;
}

TEST_F(LazyInitTest, FsckReportsBlocksInUseAboveTheBlockMark) {
  remake(low_marks());
  mount();
  fill(10, 20);  // 200 data blocks
  unmount();
  uint64_t low = superblock().data_start + 64;
  edit_superblock([&](Superblock& sb) { sb.block_hwm = low; });
  uint64_t errors = 0;
  std::string lines = fsck_lines(&errors);
  EXPECT_GT(errors, 0u);
  EXPECT_NE(lines.find("is above the block high-water mark " + std::to_string(low)),
            std::string::npos)
      << lines;
}

TEST_F(LazyInitTest, TheSuperblockRejectsMarksOutsideTheDevice) {
  remake(low_marks());
  Superblock good = superblock();
  AlignedBlock blk;
  std::string why;
  for (auto edit : {+[](Superblock& s) { s.inode_hwm = s.inode_count + 1; },
                    +[](Superblock& s) { s.inode_hwm = 0; },
                    +[](Superblock& s) { s.block_hwm = s.total_blocks + 1; },
                    +[](Superblock& s) { s.block_hwm = s.data_start - 1; }}) {
    Superblock sb = good;
    edit(sb);
    encode_superblock(blk.data(), sb, kSuperblockA);
    EXPECT_FALSE(decode_superblock(blk.data(), kSuperblockA, 0, &why).ok());
    EXPECT_NE(why.find("high-water mark"), std::string::npos) << why;
  }
}

}  // namespace
}  // namespace stablefs
