// FITRIM in the engine (MountedFs::trim over Allocator::discard_free): the
// free blocks of a range are discarded, blocks in use never are, and the
// arguments are checked as ext4 checks them (xfstests generic/260, 288).
#include <gtest/gtest.h>

#include <string>

#include "tests/unit/engine_fixture.h"

namespace stablefs {
namespace {

class TrimTest : public EngineFaultTest {
 protected:
  uint64_t device_bytes() const { return dev_.block_count() * kBlockSize; }
  // A file of `blocks` blocks, each filled with `fill`, fsync'd.
  uint64_t write_synced(const char* name, char fill, size_t blocks) {
    uint64_t f = create(name);
    const std::string data(blocks * kBlockSize, fill);
    EXPECT_EQ(*fs_->write(f, 0, data.data(), data.size()), data.size());
    EXPECT_TRUE(fs_->fsync(f, false).ok());
    return f;
  }
  static std::string page_of(char fill) { return std::string(kBlockSize, fill); }
  // Writes a 64-block file, unlinks it and commits: its blocks are free.
  void free_64_blocks(char fill) {
    uint64_t f = write_synced("gone", fill, 64);
    ASSERT_TRUE(fs_->unlink(kRootIno, "gone").ok());
    fs_->forget(f, 1);  // the kernel's reference from create
    ASSERT_TRUE(fs_->fsyncdir(kRootIno, false).ok());
    ASSERT_EQ(count_blocks_with(dev_, page_of(fill)), 64) << "freed, not yet discarded";
  }
};

TEST_F(TrimTest, DiscardsFreedBlocksAndNeverABlockInUse) {
  mount();
  write_synced("kept", 'k', 64);
  ASSERT_NO_FATAL_FAILURE(free_64_blocks('g'));
  const uint64_t discarded_before = dev_.discarded_blocks();

  auto trimmed = fs_->trim(0, device_bytes(), 0);
  ASSERT_TRUE(trimmed.ok()) << trimmed.error();
  EXPECT_EQ(count_blocks_with(dev_, page_of('g')), 0) << "the freed blocks were not discarded";
  EXPECT_EQ(count_blocks_with(dev_, page_of('k')), 64) << "a block in use was discarded";
  EXPECT_EQ(*trimmed, (dev_.discarded_blocks() - discarded_before) * kBlockSize);
  // Free blocks only: never more than statfs counts free.
  EXPECT_GE(*trimmed, 64 * kBlockSize);
  EXPECT_LE(*trimmed / kBlockSize, fs_->statfs()->blocks_free);

  unmount();
  expect_fsck_clean();
  mount();
  EXPECT_EQ(read_back("kept"), std::string(64 * kBlockSize, 'k'));
}

TEST_F(TrimTest, RangeAndMinimumLengthLimitWhatIsDiscarded) {
  mount();
  ASSERT_NO_FATAL_FAILURE(free_64_blocks('g'));
  // No free run is as long as the device: nothing qualifies.
  auto none = fs_->trim(0, device_bytes(), device_bytes());
  ASSERT_TRUE(none.ok()) << none.error();
  EXPECT_EQ(*none, 0u);
  EXPECT_EQ(count_blocks_with(dev_, page_of('g')), 64);
  // One block's range discards at most that block.
  auto one = fs_->trim(device_bytes() - kBlockSize, kBlockSize, 0);
  ASSERT_TRUE(one.ok()) << one.error();
  EXPECT_LE(*one, kBlockSize);
  // A length past the end is cut at the end, as ext4 does.
  auto tail = fs_->trim(device_bytes() / 2, UINT64_MAX, 0);
  ASSERT_TRUE(tail.ok()) << tail.error();
  EXPECT_GT(*tail, 0u);
  EXPECT_LE(*tail, device_bytes() / 2);
}

TEST_F(TrimTest, ArgumentsOutsideTheDeviceAreEinvalAsOnExt4) {
  mount();
  EXPECT_EQ(fs_->trim(device_bytes(), kBlockSize, 0).error(), EINVAL) << "start past the end";
  EXPECT_EQ(fs_->trim(UINT64_MAX, UINT64_MAX, 0).error(), EINVAL);
  EXPECT_EQ(fs_->trim(0, 0, 0).error(), EINVAL) << "length 0";
  EXPECT_EQ(fs_->trim(0, 100, 0).error(), EINVAL) << "length below one block";
  EXPECT_EQ(fs_->trim(0, device_bytes(), device_bytes() + kBlockSize).error(), EINVAL)
      << "minimum length above the device";
}

}  // namespace
}  // namespace stablefs
