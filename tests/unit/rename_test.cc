// renameat2's RENAME_WHITEOUT in the engine: the source's name is taken by a
// whiteout (character device 0:0, mode 0) in the transaction that moves the
// entry, so a crash shows either the old name or the moved entry plus the
// whiteout, never a name missing from both places.
#include <dirent.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <gtest/gtest.h>

#include "tests/unit/engine_fixture.h"

namespace stablefs {
namespace {

class WhiteoutTest : public EngineFaultTest {
 protected:
  static constexpr Creds kCaller{1234, 5678, 022};

  void expect_whiteout(std::string_view name, uint64_t parent = kRootIno) {
    auto w = fs_->lookup(parent, name);
    ASSERT_TRUE(w.ok()) << "no whiteout under '" << name << "': errno " << w.error();
    EXPECT_EQ(w->mode, uint32_t(S_IFCHR)) << "a whiteout is a character device of mode 0";
    EXPECT_EQ(w->rdev, makedev(0, 0));
    EXPECT_EQ(w->nlink, 1u);
    EXPECT_EQ(w->uid, kCaller.uid);
    EXPECT_EQ(w->gid, kCaller.gid);
  }
  // The type readdir gives `name` in directory `dir`.
  uint8_t listed_type(uint64_t dir, std::string_view name) {
    uint8_t type = 0xff;
    EXPECT_TRUE(fs_->readdir(dir, 0, [&](const DirListEntry& e) {
                     if (e.name == name) type = e.type;
                     return true;
                   }).ok());
    return type;
  }
};

TEST_F(WhiteoutTest, SourceNameBecomesAWhiteoutAndTheFileMoves) {
  mount();
  uint64_t f = create("src");
  ASSERT_EQ(*fs_->write(f, 0, "data", 4), 4u);
  ASSERT_TRUE(fs_->rename(kRootIno, "src", kRootIno, "dst", RENAME_WHITEOUT, kCaller).ok());
  EXPECT_EQ(fs_->lookup(kRootIno, "dst")->ino, f);
  EXPECT_EQ(read_back("dst"), "data");
  expect_whiteout("src");
  EXPECT_EQ(listed_type(kRootIno, "src"), DT_CHR) << "overlayfs tells whiteouts by d_type";
}

TEST_F(WhiteoutTest, IsDurableWithTheRenameAfterACrash) {
  mount();
  auto d = fs_->mkdir(kRootIno, "d", 0755, {});
  ASSERT_TRUE(d.ok());
  create("victim", d->ino);
  auto moved = fs_->mkdir(kRootIno, "moved", 0755, {});
  ASSERT_TRUE(moved.ok());
  ASSERT_TRUE(fs_->mkdir(kRootIno, "target", 0755, {}).ok());
  // A directory across directories, over an existing empty one.
  ASSERT_TRUE(fs_->rename(kRootIno, "moved", kRootIno, "target", RENAME_WHITEOUT, kCaller).ok());
  // A file over a file, in another directory.
  create("f");
  ASSERT_TRUE(fs_->rename(kRootIno, "f", d->ino, "victim", RENAME_WHITEOUT, kCaller).ok());
  ASSERT_TRUE(fs_->fsyncdir(kRootIno, false).ok());
  crash();
  mount();
  expect_whiteout("moved");
  expect_whiteout("f");
  EXPECT_EQ(fs_->lookup(kRootIno, "target")->ino, moved->ino);
  EXPECT_TRUE(fs_->lookup(d->ino, "victim").ok());
  // Root: ".", "..", d and target are directories; the whiteouts add no link.
  EXPECT_EQ(fs_->getattr(kRootIno)->nlink, 4u);
  unmount();
  expect_fsck_clean();
}

TEST_F(WhiteoutTest, NoreplaceKeepsAnExistingTargetAndLeavesNoWhiteout) {
  mount();
  create("a");
  create("b");
  EXPECT_EQ(fs_->rename(kRootIno, "a", kRootIno, "b", RENAME_WHITEOUT | RENAME_NOREPLACE, kCaller)
                .error(),
            EEXIST);
  EXPECT_EQ(fs_->getattr(fs_->lookup(kRootIno, "a")->ino)->mode & S_IFMT, uint32_t(S_IFREG));
  ASSERT_TRUE(
      fs_->rename(kRootIno, "a", kRootIno, "c", RENAME_WHITEOUT | RENAME_NOREPLACE, kCaller).ok());
  expect_whiteout("a");
  EXPECT_EQ(fs_->rename(kRootIno, "b", kRootIno, "c", RENAME_WHITEOUT | RENAME_EXCHANGE, kCaller)
                .error(),
            EINVAL);
}

TEST_F(WhiteoutTest, SetgidDirectoryGivesTheWhiteoutItsGroup) {
  mount();
  uint64_t d = setgid_dir("sgid", 42);
  create("f", d);
  ASSERT_TRUE(fs_->rename(d, "f", d, "g", RENAME_WHITEOUT, kCaller).ok());
  EXPECT_EQ(fs_->lookup(d, "f")->gid, 42u);
}

// A rename that fails at its first entry change frees the whiteout it
// made: no inode is left allocated without a name.
TEST_F(WhiteoutTest, FailedRenameLeavesNoOrphanWhiteout) {
  mount();
  create("a");
  const FsStat before = *fs_->statfs();
  static_cast<MountedFs&>(*fs_).step_hook_ = [](std::string_view step) {
    return step == "rename: the first entry" ? Status(err(ENOSPC)) : Status::Ok();
  };
  EXPECT_EQ(fs_->rename(kRootIno, "a", kRootIno, "b", RENAME_WHITEOUT, kCaller).error(), ENOSPC);
  static_cast<MountedFs&>(*fs_).step_hook_ = nullptr;
  EXPECT_EQ(fs_->lookup(kRootIno, "a")->mode & S_IFMT, uint32_t(S_IFREG));
  EXPECT_EQ(fs_->lookup(kRootIno, "b").error(), ENOENT);
  ASSERT_TRUE(fs_->fsyncdir(kRootIno, false).ok());
  EXPECT_EQ(fs_->statfs()->files_free, before.files_free) << "the whiteout was not freed";
  crash();
  expect_fsck_clean();
  mount();
  EXPECT_EQ(fs_->statfs()->files_free, before.files_free);
}

}  // namespace
}  // namespace stablefs
