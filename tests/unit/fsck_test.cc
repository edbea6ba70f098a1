// check_filesystem (core/fsck.h) on an in-memory device: read_only writes
// nothing even when the journal needs replaying, a plain run writes only
// the replay, and the block-count and xattr cross-checks accept everything
// the engine itself produces (sparse files, fallocate past EOF, punched
// holes, deep extent trees, xattr blocks come and go).
#include <fcntl.h>
#include <linux/falloc.h>

#include <gtest/gtest.h>

#include "core/base/format.h"
#include "core/fsck.h"
#include "core/posix_acl.h"
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

// A stored ACL must be a valid one, and the access ACL's owner, mask and
// other entries must agree with the mode: fsck reads the xattr block's
// ACL values (a sealed block, so only the ACL check can object).
class FsckAclTest : public FsckTest {
 protected:
  // Mounts, gives `f` an access ACL (user:1000 beside the base entries),
  // unmounts; returns f's xattr block.
  uint64_t file_with_acl() {
    mount();
    uint64_t f = create("f");
    Acl acl = {{kAclUserObj, 7, kAclUndefinedId}, {kAclUser, 5, 1000},
               {kAclGroupObj, 4, kAclUndefinedId}, {kAclMask, 5, kAclUndefinedId},
               {kAclOther, 0, kAclUndefinedId}};
    EXPECT_TRUE(fs_->setxattr(f, kAclAccessXattr, encode_acl(acl), 0).ok());
    unmount();
    for (uint64_t b = 0; b < dev_.block_count(); b++) {
      auto blk = dev_.durable_block(b);
      MetaHeader h = decode_meta_header(blk.data());
      if (h.magic == kMagicXattr && h.owner == f &&
          verify_meta_block(blk.data(), b, kMagicXattr, nullptr).ok())
        return b;
    }
    ADD_FAILURE() << "no xattr block for inode " << f;
    return 0;
  }
  // Sets byte `at` of the (only) ACL value to v and reseals the block.
  void poke_acl_value(uint64_t block, size_t at, uint8_t v) {
    const size_t value = kMetaHeaderSize + 2 + 3 + kAclAccessXattr.size();
    auto blk = dev_.durable_block(block);
    blk[value + at] = v;
    seal_meta_block(blk.data(), block, decode_meta_header(blk.data()).txid);
    for (size_t i = 0; i < blk.size(); i++)
      if (blk[i] != dev_.durable_block(block)[i]) dev_.poke(block, i, blk[i]);
  }
};

TEST_F(FsckAclTest, AStoredAclChecksClean) {
  file_with_acl();
  std::string lines;
  EXPECT_EQ(fsck(true, &lines).errors, 0u) << lines;
}

TEST_F(FsckAclTest, AnInvalidAclIsAnError) {
  uint64_t b = file_with_acl();
  poke_acl_value(b, 0, 3);  // version 3
  std::string lines;
  EXPECT_EQ(fsck(true, &lines).errors, 1u) << lines;
  EXPECT_NE(lines.find("not a valid POSIX ACL"), std::string::npos) << lines;
}

TEST_F(FsckAclTest, AnAccessAclThatDisagreesWithTheModeIsAnError) {
  uint64_t b = file_with_acl();
  poke_acl_value(b, 4 + 2, 6);  // user::rw- while the mode says rwx
  std::string lines;
  EXPECT_EQ(fsck(true, &lines).errors, 1u) << lines;
  EXPECT_NE(lines.find("disagree with the mode"), std::string::npos) << lines;
}

}  // namespace
}  // namespace stablefs
