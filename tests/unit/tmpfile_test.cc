// O_TMPFILE in the engine (MountedFs::tmpfile): a regular file with no name
// and a link count of 0 from the start, which link() may name once unless
// it was made exclusive, and which a crash leaves to the orphan cleanup.
#include <gtest/gtest.h>

#include <string>

#include "tests/unit/engine_fixture.h"

namespace stablefs {
namespace {

class TmpfileTest : public EngineFaultTest {
 protected:
  static constexpr Creds kCaller{1000, 1000, 022};
};

TEST_F(TmpfileTest, IsNamelessUntilLinkedAndKeepsItsData) {
  mount();
  auto t = fs_->tmpfile(kRootIno, 0640, true, kCaller);
  ASSERT_TRUE(t.ok()) << t.error();
  EXPECT_EQ(t->nlink, 0u);
  EXPECT_EQ(t->mode, uint32_t(S_IFREG | 0640));
  EXPECT_EQ(t->uid, kCaller.uid);
  ASSERT_EQ(*fs_->write(t->ino, 0, "nameless", 8), 8u);
  auto linked = fs_->link(t->ino, kRootIno, "named");
  ASSERT_TRUE(linked.ok()) << linked.error();
  EXPECT_EQ(linked->nlink, 1u);
  ASSERT_TRUE(fs_->fsync(t->ino, false).ok());
  crash();
  mount();
  EXPECT_EQ(read_back("named"), "nameless");
}

TEST_F(TmpfileTest, ExclusiveOneAndOneUnlinkedAgainCannotBeLinked) {
  mount();
  auto excl = fs_->tmpfile(kRootIno, 0600, false, kCaller);
  ASSERT_TRUE(excl.ok());
  EXPECT_EQ(fs_->link(excl->ino, kRootIno, "x").error(), ENOENT);
  auto t = fs_->tmpfile(kRootIno, 0600, true, kCaller);
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(fs_->link(t->ino, kRootIno, "once").ok());
  ASSERT_TRUE(fs_->unlink(kRootIno, "once").ok());
  EXPECT_EQ(fs_->link(t->ino, kRootIno, "twice").error(), ENOENT);
}

TEST_F(TmpfileTest, UnnamedOneIsFreedByTheNextMountAfterACrash) {
  mount();
  const uint64_t inodes_free = fs_->statfs()->files_free;
  auto t = fs_->tmpfile(kRootIno, 0600, true, kCaller);
  ASSERT_TRUE(t.ok());
  const std::string data(16 * kBlockSize, 't');
  ASSERT_EQ(*fs_->write(t->ino, 0, data.data(), data.size()), data.size());
  ASSERT_TRUE(fs_->fsync(t->ino, false).ok());
  EXPECT_EQ(fs_->statfs()->files_free, inodes_free - 1);
  crash();
  mount();  // frees the orphan; the slot is reusable once that commits
  unmount();
  expect_fsck_clean();
  mount();
  EXPECT_EQ(fs_->statfs()->files_free, inodes_free) << "the orphan was not freed";
}

TEST_F(TmpfileTest, SetgidDirectoryGivesItsGroup) {
  mount();
  auto t = fs_->tmpfile(setgid_dir("sgid", 42), 0600, true, kCaller);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->gid, 42u);
}

}  // namespace
}  // namespace stablefs
