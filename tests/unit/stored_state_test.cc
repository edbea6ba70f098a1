// State is changed only after it is stored: an engine call that fails
// (a metadata read error, ENOSPC) leaves the inodes and directories as
// they were stored, in memory and on disk. Each test fails a block that
// the call needs after earlier versions of the engine had already changed
// the in-memory inode, and checks what get/lookup answer, then what a
// crash and fsck find.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "tests/unit/engine_fixture.h"

namespace stablefs {
namespace {

class StoredStateTest : public EngineFaultTest {
 protected:
  // The tree every test starts from, each object the first inode of an
  // inode-table block of its own (inodes are handed out in order), so a
  // fault on one object's block touches no other.
  void SetUp() override {
    EngineFaultTest::SetUp();
    mount();
    f_ = create_alone("f", S_IFREG | 0644);
    ASSERT_EQ(*fs_->write(f_, 0, data_.data(), data_.size()), data_.size());
    suid_ = create_alone("suid", S_IFREG | 04755);
    ASSERT_TRUE(fs_->setxattr(suid_, "user.x", "1", 0).ok());
    d_ = create_alone("d", S_IFDIR | 0755);
    e_ = create_alone("e", S_IFDIR | 0755);
    for (int i = 0; i < kSpares; i++)
      spares_.push_back(create_alone("spare" + std::to_string(i), S_IFREG | 0644));
    unmount();
  }

  uint64_t create_alone(const std::string& name, uint32_t mode) {
    for (uint32_t i = 1; i < kInodesPerBlock; i++) create(("pad" + std::to_string(pads_++)).c_str());
    auto a = S_ISDIR(mode) ? fs_->mkdir(kRootIno, name, mode & 07777, {})
                           : fs_->mknod(kRootIno, name, mode, 0, {});
    EXPECT_TRUE(a.ok()) << name;
    if (!a.ok()) return 0;
    EXPECT_EQ(inode_slot(a->ino), 0u) << name << " shares its inode-table block";
    return a->ino;
  }

  // Mounts with a one-block metadata cache and looks every object up.
  FaultDevice& mount_small_cache() {
    FaultDevice& faults = mount_with_faults(kBlockSize);
    for (const char* name : {"f", "suid", "d", "e"}) EXPECT_TRUE(fs_->lookup(kRootIno, name).ok());
    return faults;
  }

  uint64_t inode_table_block(uint64_t ino) {
    std::vector<uint8_t> sb0 = dev_.durable_block(kSuperblockA);
    auto sb = decode_superblock(sb0.data(), kSuperblockA, dev_.block_count(), nullptr);
    EXPECT_TRUE(sb.ok());
    return inode_block(*sb, ino);
  }

  // Reads of ino's inode-table block fail from now on; the block leaves
  // the metadata cache (another one is read), so the next use of it reads.
  void fail_inode_reads(FaultDevice& faults, uint64_t ino) {
    faults.fail_block(inode_table_block(ino), FaultOn::kRead);
    ASSERT_LT(next_spare_, spares_.size());
    ASSERT_TRUE(fs_->lookup(kRootIno, "spare" + std::to_string(next_spare_++)).ok());
  }

  // Mounts, makes f's inode-table block unreadable and sees setattr fail.
  FaultDevice& setattr_of_f_fails(const SetAttr& sa) {
    FaultDevice& faults = mount_small_cache();
    fail_inode_reads(faults, f_);
    EXPECT_EQ(fs_->setattr(f_, sa).error(), EIO);
    EXPECT_GT(faults.injected_faults(), 0u);
    return faults;
  }

  // What a crash leaves once the device works again: a clean fsck.
  void crash_and_check(FaultDevice& faults) {
    faults.clear_faults();
    ASSERT_TRUE(fs_->fsyncdir(kRootIno, false).ok());
    crash();
    expect_fsck_clean();
    mount();
  }

  static constexpr int kSpares = 4;
  const std::string data_ = std::string(3 * kBlockSize, 'f');
  uint64_t f_ = 0, suid_ = 0, d_ = 0, e_ = 0;
  std::vector<uint64_t> spares_;
  size_t next_spare_ = 0;
  int pads_ = 0;
};

TEST_F(StoredStateTest, ChmodThatCannotBeStoredChangesNothing) {
  SetAttr sa;
  sa.mode = 0600;
  FaultDevice& faults = setattr_of_f_fails(sa);
  EXPECT_EQ(fs_->getattr(f_)->mode & 07777, 0644u) << "the unsaved mode is served";
  crash_and_check(faults);
  EXPECT_EQ(fs_->getattr(fs_->lookup(kRootIno, "f")->ino)->mode & 07777, 0644u);
}

TEST_F(StoredStateTest, ChownWhoseXattrsCannotBeReadChangesNothing) {
  std::vector<uint8_t> blk = dev_.durable_block(inode_table_block(suid_));
  const uint64_t xattr_block =
      decode_inode(blk.data() + kMetaHeaderSize + inode_slot(suid_) * kInodeSize).xattr_block;
  ASSERT_NE(xattr_block, 0u);
  FaultDevice& faults = mount_with_faults();
  faults.fail_block(xattr_block, FaultOn::kRead);
  SetAttr sa;
  sa.uid = 1234;
  sa.kill_suidgid = true;  // the kernel's FATTR_KILL_SUIDGID: a chown drops a file capability
  EXPECT_EQ(fs_->setattr(suid_, sa).error(), EIO);
  auto a = fs_->getattr(suid_);
  EXPECT_EQ(a->uid, 0u) << "the unsaved owner is served";
  EXPECT_EQ(a->mode & 07777, 04755u);
}

TEST_F(StoredStateTest, TruncateThatCannotBeStoredChangesNothing) {
  SetAttr sa;
  sa.size = 100;
  FaultDevice& faults = setattr_of_f_fails(sa);
  EXPECT_EQ(fs_->getattr(f_)->size, data_.size()) << "the unsaved size is served";
  EXPECT_EQ(read_back("f"), data_);
  crash_and_check(faults);
  EXPECT_EQ(read_back("f"), data_);
}

TEST_F(StoredStateTest, LinkThatCannotBeStoredChangesNothing) {
  FaultDevice& faults = mount_small_cache();
  fail_inode_reads(faults, f_);
  EXPECT_EQ(fs_->link(f_, kRootIno, "hard").error(), EIO);
  EXPECT_EQ(fs_->getattr(f_)->nlink, 1u) << "the unsaved link count is served";
  EXPECT_EQ(fs_->lookup(kRootIno, "hard").error(), ENOENT);
  crash_and_check(faults);
  EXPECT_EQ(fs_->lookup(kRootIno, "hard").error(), ENOENT);
}

TEST_F(StoredStateTest, UnlinkThatCannotBeStoredChangesNothing) {
  FaultDevice& faults = mount_small_cache();
  fail_inode_reads(faults, f_);
  EXPECT_EQ(fs_->unlink(kRootIno, "f").error(), EIO);
  auto a = fs_->lookup(kRootIno, "f");
  ASSERT_TRUE(a.ok()) << "the entry went, errno " << a.error();
  EXPECT_EQ(a->nlink, 1u);
  crash_and_check(faults);
  EXPECT_EQ(read_back("f"), data_);
}

TEST_F(StoredStateTest, RenameThatCannotBeStoredChangesNothing) {
  FaultDevice& faults = mount_small_cache();
  const uint32_t root_links = fs_->getattr(kRootIno)->nlink;
  fail_inode_reads(faults, d_);
  EXPECT_EQ(fs_->rename(kRootIno, "d", e_, "d", 0, Creds{}).error(), EIO);
  EXPECT_TRUE(fs_->lookup(kRootIno, "d").ok()) << "the entry left its directory";
  EXPECT_EQ(fs_->lookup(e_, "d").error(), ENOENT);
  EXPECT_EQ(fs_->getattr(e_)->nlink, 2u);
  EXPECT_EQ(fs_->getattr(kRootIno)->nlink, root_links);
  crash_and_check(faults);
  EXPECT_EQ(fs_->lookup(e_, "d").error(), ENOENT);
  EXPECT_TRUE(fs_->lookup(kRootIno, "d").ok());
}

TEST_F(StoredStateTest, MkdirInADirectoryThatCannotBeStoredLeavesNothing) {
  FaultDevice& faults = mount_small_cache();
  const uint64_t files_free = fs_->statfs()->files_free;
  fail_inode_reads(faults, d_);
  EXPECT_EQ(fs_->mkdir(d_, "sub", 0755, {}).error(), EIO);
  EXPECT_EQ(fs_->lookup(d_, "sub").error(), ENOENT);
  EXPECT_EQ(fs_->getattr(d_)->nlink, 2u);
  crash_and_check(faults);
  EXPECT_EQ(fs_->lookup(fs_->lookup(kRootIno, "d")->ino, "sub").error(), ENOENT);
  EXPECT_EQ(fs_->statfs()->files_free, files_free) << "the new inode was not freed";
}

TEST_F(StoredStateTest, RmdirThatCannotBeStoredChangesNothing) {
  FaultDevice& faults = mount_small_cache();
  const uint32_t root_links = fs_->getattr(kRootIno)->nlink;
  fail_inode_reads(faults, e_);
  EXPECT_EQ(fs_->rmdir(kRootIno, "e").error(), EIO);
  EXPECT_TRUE(fs_->lookup(kRootIno, "e").ok()) << "the entry went";
  EXPECT_EQ(fs_->getattr(kRootIno)->nlink, root_links);
  crash_and_check(faults);
  EXPECT_TRUE(fs_->lookup(kRootIno, "e").ok());
}

TEST_F(StoredStateTest, FallocateThatCannotBeStoredChangesNothing) {
  FaultDevice& faults = mount_small_cache();
  const uint64_t blocks512 = fs_->getattr(f_)->blocks512;
  fail_inode_reads(faults, f_);
  EXPECT_EQ(fs_->fallocate(f_, 0, 0, 8 * kBlockSize).error(), EIO);
  auto a = fs_->getattr(f_);
  EXPECT_EQ(a->size, data_.size()) << "the unsaved size is served";
  EXPECT_EQ(a->blocks512, blocks512) << "blocks charged that were not stored";
  crash_and_check(faults);  // and no block allocated for nobody
  EXPECT_EQ(read_back("f"), data_);
}

TEST_F(StoredStateTest, SetxattrThatCannotBeStoredChangesNothing) {
  FaultDevice& faults = mount_small_cache();
  const uint64_t blocks512 = fs_->getattr(f_)->blocks512;
  fail_inode_reads(faults, f_);
  EXPECT_EQ(fs_->setxattr(f_, "user.k", "v", 0).error(), EIO);
  EXPECT_EQ(fs_->getxattr(f_, "user.k").error(), ENODATA);
  EXPECT_EQ(fs_->getattr(f_)->blocks512, blocks512) << "an xattr block charged that was not stored";
  crash_and_check(faults);  // and no xattr block allocated for nobody
  EXPECT_EQ(fs_->getxattr(fs_->lookup(kRootIno, "f")->ino, "user.k").error(), ENODATA);
}

// xfstests generic/213 then 214: a fallocate that filled the filesystem,
// the file removed, and at once another fallocate. The removed file's
// blocks wait for their freeing commit; the allocation commits to get them
// (as writeback does) instead of failing with ENOSPC.
TEST_F(StoredStateTest, FallocateRightAfterAFullFileWentCommitsToReuseItsBlocks) {
  mount_with_faults();
  uint64_t big = create("big");
  ASSERT_EQ(fs_->fallocate(big, 0, 0, dev_.block_count() * kBlockSize).error(), ENOSPC);
  ASSERT_TRUE(fs_->unlink(kRootIno, "big").ok());
  fs_->forget(big, 1);
  ASSERT_GT(fs_->statfs()->blocks_free, 64u) << "statfs counts blocks waiting for a commit as free";
  uint64_t small = create("small");
  Status s = fs_->fallocate(small, 0, 0, 64 * kBlockSize);
  EXPECT_TRUE(s.ok()) << "ENOSPC with the blocks freed but not yet committed: " << s.error();
  unmount();
  expect_fsck_clean();
}

// A directory that must grow when its extent root is full needs a block
// and a tree node. With one free block, the node cannot be had: the
// create fails with ENOSPC and the block goes back (it used to stay
// allocated for nobody).
TEST_F(StoredStateTest, DirectoryGrowthWithoutRoomForItsMapLeaksNothing) {
  mount_with_faults();
  auto d = fs_->mkdir(kRootIno, "grow", 0755, {});
  ASSERT_TRUE(d.ok());
  uint64_t filler = create("filler");
  uint64_t one = create("one");
  ASSERT_EQ(*fs_->write(one, 0, data_.data(), kBlockSize), kBlockSize);
  ASSERT_TRUE(fs_->fsync(one, false).ok());
  // Every directory block an extent of its own: after each growth the
  // block after it goes to `filler`, so the next one cannot be contiguous.
  const std::string stem(200, 'n');
  int names = 0;
  auto add_entry = [&] {
    return fs_->mknod(d->ino, stem + std::to_string(names++), S_IFREG | 0644, 0, {});
  };
  for (uint64_t blocks = 0; blocks < kInlineExtents;) {
    auto a = add_entry();
    ASSERT_TRUE(a.ok()) << a.error();
    fs_->forget(a->ino, 1);
    if (fs_->getattr(d->ino)->size / kBlockSize > blocks) {
      blocks++;
      ASSERT_TRUE(fs_->fallocate(filler, 0, blocks * kBlockSize, kBlockSize).ok());
    }
  }
  // Take every free block, then give exactly one back.
  uint64_t big = create("big");
  ASSERT_EQ(fs_->fallocate(big, 0, 0, dev_.block_count() * kBlockSize).error(), ENOSPC);
  ASSERT_TRUE(fs_->unlink(kRootIno, "one").ok());
  fs_->forget(one, 1);
  ASSERT_TRUE(fs_->fsyncdir(kRootIno, false).ok());
  ASSERT_EQ(fs_->statfs()->blocks_free, 1u);
  Result<Attr> a = add_entry();
  for (int i = 0; i < 40 && a.ok(); i++) {
    fs_->forget(a->ino, 1);
    a = add_entry();
  }
  ASSERT_FALSE(a.ok()) << "the directory never needed to grow";
  EXPECT_EQ(a.error(), ENOSPC);
  ASSERT_TRUE(fs_->fsyncdir(kRootIno, false).ok());
  EXPECT_EQ(fs_->statfs()->blocks_free, 1u) << "the directory's new block was leaked";
  unmount();
  expect_fsck_clean();
}

// Fails the step of a namespace change named `step` with `error`, once.
void fail_step(Filesystem& fs, std::string step, int error) {
  static_cast<MountedFs&>(fs).step_hook_ = [step, error, done = false](std::string_view at) mutable {
    if (done || at != step) return Status::Ok();
    done = true;
    return Status(err(error));
  };
}

// A rename whose second entry change fails after the first was made can
// be neither finished nor taken back: the journal aborts, the filesystem
// turns read-only, and the half-done rename never commits. After the
// crash both names, the parents and the link counts are as before.
class HalfDoneRenameTest : public StoredStateTest {
 protected:
  void rename_fails_half_done(uint64_t to_dir, const char* to_name, unsigned flags) {
    mount();
    root_links_ = fs_->getattr(kRootIno)->nlink;
    e_links_ = fs_->getattr(e_)->nlink;
    fail_step(*fs_, "rename: the second entry", EIO);
    EXPECT_EQ(fs_->rename(kRootIno, "d", to_dir, to_name, flags, Creds{}).error(), EIO);
    EXPECT_FALSE(fs_->fsyncdir(kRootIno, false).ok()) << "the half-done rename could commit";
    crash();
    expect_fsck_clean();
    mount();
    auto d = fs_->lookup(kRootIno, "d");
    ASSERT_TRUE(d.ok()) << "the moved name is gone: errno " << d.error();
    EXPECT_EQ(d->ino, d_);
    auto e = fs_->lookup(kRootIno, "e");
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->ino, e_);
    EXPECT_EQ(fs_->lookup(e_, "d").error(), ENOENT);
    EXPECT_EQ(fs_->lookup(d_, "..")->ino, kRootIno) << "d changed parents";
    EXPECT_EQ(fs_->getattr(kRootIno)->nlink, root_links_);
    EXPECT_EQ(fs_->getattr(e_)->nlink, e_links_);
    EXPECT_EQ(fs_->getattr(d_)->nlink, 2u);
  }
  uint32_t root_links_ = 0, e_links_ = 0;
};

TEST_F(HalfDoneRenameTest, MoveIntoAnotherDirectoryNeverCommitsHalfDone) {
  rename_fails_half_done(e_, "d", 0);
}

TEST_F(HalfDoneRenameTest, ExchangeNeverCommitsHalfDone) {
  rename_fails_half_done(kRootIno, "e", RENAME_EXCHANGE);
}

// A create that fails at its directory entry, after the new inode was
// stored, takes the inode back: no entry, the parent's link count and the
// free inode and block counts as before, nothing for fsck to find, and no
// kernel reference left that would keep the inode.
TEST_F(StoredStateTest, MkdirFailingAtItsEntryLeavesNothing) {
  mount();
  const uint32_t root_links = fs_->getattr(kRootIno)->nlink;
  const FsStat before = *fs_->statfs();
  fail_step(*fs_, "create: add the entry", ENOSPC);
  EXPECT_EQ(fs_->mkdir(kRootIno, "sub", 0755, {}).error(), ENOSPC);
  EXPECT_EQ(fs_->lookup(kRootIno, "sub").error(), ENOENT);
  EXPECT_EQ(fs_->getattr(kRootIno)->nlink, root_links);
  ASSERT_TRUE(fs_->fsyncdir(kRootIno, false).ok());
  EXPECT_EQ(fs_->statfs()->files_free, before.files_free) << "the new inode was not freed";
  EXPECT_EQ(fs_->statfs()->blocks_free, before.blocks_free);
  crash();
  expect_fsck_clean();
  mount();
  EXPECT_EQ(fs_->lookup(kRootIno, "sub").error(), ENOENT);
  EXPECT_EQ(fs_->getattr(kRootIno)->nlink, root_links);
  EXPECT_EQ(fs_->statfs()->files_free, before.files_free);
}

// The last reference to an unlinked file goes while its record cannot be
// read: nothing is freed (the xattr block used to be freed in the journal
// while the stored record still named it), and the next mount frees the
// orphan whole.
TEST_F(StoredStateTest, EvictionThatCannotBeStoredFreesNothing) {
  FaultDevice& faults = mount_small_cache();
  MountedFs& m = static_cast<MountedFs&>(*fs_);
  ASSERT_TRUE(fs_->unlink(kRootIno, "suid").ok());  // the lookup above keeps it
  ASSERT_TRUE(m.checkpoint().ok());  // its record home, so the cache may drop it
  fail_inode_reads(faults, suid_);
  fs_->forget(suid_, 1);
  faults.clear_faults();
  ASSERT_TRUE(fs_->fsyncdir(kRootIno, false).ok());
  crash();
  expect_fsck_clean();  // what the crash left: an orphan, and its blocks still its own
  mount();  // frees the orphan
  EXPECT_EQ(fs_->lookup(kRootIno, "suid").error(), ENOENT);
  unmount();
  expect_fsck_clean();
}

}  // namespace
}  // namespace stablefs
