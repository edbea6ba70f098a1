// What file handles need of the engine (export support): LOOKUP of "." by
// node id for every file type, ".." in any directory, and a generation
// that tells a reused inode slot from the inode a handle was made for.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "tests/unit/engine_fixture.h"

namespace stablefs {
namespace {

class Handles : public EngineTest {};

TEST_F(Handles, DotFindsAnyInodeByItsNumberAndCountsAReference) {
  mount();
  uint64_t f = create("f");
  auto l = fs_->symlink(kRootIno, "l", "f", {});
  ASSERT_TRUE(l.ok());
  for (uint64_t ino : {f, l->ino, kRootIno}) {
    auto a = fs_->lookup(ino, ".");
    ASSERT_TRUE(a.ok()) << "ino " << ino << ": errno " << a.error();
    EXPECT_EQ(a->ino, ino);
  }
  // The lookup counted: forgetting the create's reference and the "."'s
  // after an unlink frees the inode only with both.
  ASSERT_TRUE(fs_->unlink(kRootIno, "f").ok());
  fs_->forget(f, 1);
  EXPECT_EQ(fs_->getattr(f).error(), 0) << "still referenced by the '.' lookup";
  fs_->forget(f, 1);
  EXPECT_EQ(fs_->lookup(f, ".").error(), ENOENT) << "freed: the kernel says ESTALE";
}

TEST_F(Handles, AReusedSlotHasANewGeneration) {
  mount();
  auto first = fs_->mknod(kRootIno, "f", S_IFREG | 0644, 0, {});
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(fs_->unlink(kRootIno, "f").ok());
  fs_->forget(first->ino, 1);
  // The allocator searches on from the last inode it gave out; a fresh
  // mount starts from the first free slot again.
  unmount();
  mount();
  auto second = fs_->mknod(kRootIno, "g", S_IFREG | 0644, 0, {});
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second->ino, first->ino) << "setup: the allocator reuses the freed slot";
  auto a = fs_->lookup(first->ino, ".");
  ASSERT_TRUE(a.ok());
  EXPECT_NE(a->generation, first->generation);
}

}  // namespace
}  // namespace stablefs
