// check_filesystem (core/fsck.h) on an in-memory device: read_only writes
// nothing even when the journal needs replaying, a plain run writes only
// the replay, and the block-count and xattr cross-checks accept everything
// the engine itself produces (sparse files, fallocate past EOF, punched
// holes, deep extent trees, xattr blocks come and go).
#include <fcntl.h>
#include <linux/falloc.h>

#include <gtest/gtest.h>

#include "core/fsck.h"
#include "tests/unit/engine_fixture.h"

namespace stablefs {
namespace {

class FsckTest : public EngineTest {
 protected:
  FsckResult fsck(bool read_only, std::string* lines = nullptr) {
    FsckOptions fo;
    fo.scrub = true;
    fo.read_only = read_only;
    std::string seen;
    fo.report = [&](const std::string& l) { seen += l + "\n"; };
    auto r = check_filesystem(dev_, fo);
    EXPECT_TRUE(r.ok()) << r.error();
    if (lines) *lines = seen;
    return r.ok() ? *r : FsckResult{};
  }
};

TEST_F(FsckTest, ReadOnlyReplaysIntoMemoryAndWritesNothing) {
  mount();
  ASSERT_TRUE(fs_->mkdir(kRootIno, "d", 0755, {}).ok());
  uint64_t ino = create("f");
  std::string data(3 * 4096 + 5, 'r');
  ASSERT_TRUE(fs_->write(ino, 0, data.data(), data.size()).ok());
  ASSERT_TRUE(fs_->fsync(ino, false).ok());
  ASSERT_TRUE(fs_->fsyncdir(kRootIno, false).ok());
  crash();

  const uint64_t writes = dev_.write_count(), flushes = dev_.flush_count();
  std::string lines;
  FsckResult ro = fsck(true, &lines);
  EXPECT_EQ(dev_.write_count(), writes) << "read_only wrote to the device";
  EXPECT_EQ(dev_.flush_count(), flushes);
  EXPECT_EQ(ro.errors, 0u) << lines;
  EXPECT_EQ(ro.checksum_mismatches, 0u) << lines;
  EXPECT_EQ(ro.corrections, 0u);
  EXPECT_EQ(ro.corrections_skipped, 1u) << lines;
  EXPECT_GT(ro.journal_transactions_replayed, 0u);
  // What the checks saw is the replayed filesystem: root, d and f.
  EXPECT_EQ(ro.inodes, 3u) << lines;
  EXPECT_EQ(ro.directories, 2u);

  FsckResult fix = fsck(false, &lines);
  EXPECT_GT(dev_.write_count(), writes);
  EXPECT_EQ(fix.errors, 0u) << lines;
  EXPECT_EQ(fix.corrections, 1u) << lines;
  EXPECT_EQ(fix.journal_transactions_replayed, ro.journal_transactions_replayed);
  EXPECT_EQ(fix.inodes, 3u);

  const uint64_t after = dev_.write_count();
  FsckResult again = fsck(false, &lines);
  EXPECT_EQ(again.corrections + again.corrections_skipped + again.errors, 0u) << lines;
  EXPECT_EQ(dev_.write_count(), after) << "nothing left to correct, nothing written";
}

// Every way the engine changes a file's blocks keeps `blocks` equal to the
// mapped blocks plus the xattr block, which fsck now checks.
TEST_F(FsckTest, BlockCountsOfEverythingTheEngineMakesCheckClean) {
  mount();
  const std::string page(4096, 'p');
  uint64_t sparse = create("sparse");
  ASSERT_TRUE(fs_->write(sparse, 1 << 20, page.data(), page.size()).ok());
  uint64_t keep = create("fallocated_past_eof");
  ASSERT_TRUE(fs_->write(keep, 0, page.data(), 100).ok());
  ASSERT_TRUE(fs_->fallocate(keep, FALLOC_FL_KEEP_SIZE, 0, 64 * 4096).ok());
  uint64_t punched = create("punched");
  for (int i = 0; i < 32; i++)
    ASSERT_TRUE(fs_->write(punched, uint64_t(i) * 4096, page.data(), page.size()).ok());
  ASSERT_TRUE(fs_->fsync(punched, false).ok());
  ASSERT_TRUE(
      fs_->fallocate(punched, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4 * 4096, 8 * 4096)
          .ok());
  // One block every 2 blocks over 2 MiB: more extents than the inode root
  // holds, so the map grows a tree (whose nodes are not charged).
  uint64_t fragmented = create("fragmented");
  for (int i = 0; i < 512; i += 2)
    ASSERT_TRUE(fs_->write(fragmented, uint64_t(i) * 4096, page.data(), page.size()).ok());
  uint64_t rewritten = create("rewritten");
  ASSERT_TRUE(fs_->write(rewritten, 0, page.data(), page.size()).ok());
  ASSERT_TRUE(fs_->fsync(rewritten, false).ok());
  ASSERT_TRUE(fs_->write(rewritten, 0, page.data(), page.size()).ok());  // redirect-on-write
  ASSERT_TRUE(fs_->setxattr(rewritten, "user.a", "1", 0).ok());
  uint64_t dropped = create("xattr_removed");
  ASSERT_TRUE(fs_->setxattr(dropped, "user.a", "1", 0).ok());
  ASSERT_TRUE(fs_->removexattr(dropped, "user.a").ok());
  ASSERT_TRUE(fs_->symlink(kRootIno, "long", std::string(1000, 'l'), {}).ok());
  ASSERT_TRUE(fs_->symlink(kRootIno, "short", "s", {}).ok());
  auto dir = fs_->mkdir(kRootIno, "big_dir", 0755, {});
  ASSERT_TRUE(dir.ok());
  for (int i = 0; i < 300; i++)
    ASSERT_TRUE(fs_->mknod(dir->ino, std::string(100, 'n') + std::to_string(i), S_IFREG | 0644,
                           0, {})
                    .ok());
  unmount();

  std::string lines;
  FsckResult r = fsck(true, &lines);
  EXPECT_EQ(r.errors, 0u) << lines;
  EXPECT_EQ(r.checksum_mismatches, 0u) << lines;
  EXPECT_EQ(r.corrections_skipped, 0u) << lines;
}

}  // namespace
}  // namespace stablefs
