// The stored size of a file covers only data that is stored (ext4's
// i_disksize): write() moves the size in memory, and the record's size
// follows once writeback has mapped the data under it. A store of the
// inode for another reason (chmod, a link, an xattr) in between must not
// carry the in-memory size to disk, or a crash leaves a committed size
// over blocks never written, and the file reads zeros the application
// never wrote. Truncate and fallocate are explicit size changes: the zeros
// they add are what the caller asked for.
#include <fcntl.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "tests/unit/engine_fixture.h"

namespace stablefs {
namespace {

class DiskSizeTest : public EngineFaultTest {
 protected:
  // The flusher never writes back on its own during a test: only the
  // calls a test makes move data to the disk.
  static MountOptions no_background_writeback() {
    MountOptions o;
    o.writeback_delay_ms = 3600 * 1000;
    return o;
  }
  MountedFs& mount_quiet() { return mount(no_background_writeback()); }

  void write_all(uint64_t ino, uint64_t off, const std::string& s) {
    auto w = fs_->write(ino, off, s.data(), s.size());
    ASSERT_TRUE(w.ok()) << w.error();
    ASSERT_EQ(*w, s.size());
  }
  void chmod(uint64_t ino, uint32_t mode) {
    SetAttr sa;
    sa.mode = mode;
    ASSERT_TRUE(fs_->setattr(ino, sa).ok());
  }
  // Commits the running transaction through something other than `f`.
  void commit_elsewhere() {
    uint64_t other = create("other");
    ASSERT_TRUE(fs_->fsync(other, false).ok());
  }
  // After a crash: f is either `before` or `after`, never a size that
  // covers bytes nobody wrote.
  void expect_one_of(const std::string& before, const std::string& after) {
    std::string back = read_back("f");
    if (back.size() == before.size())
      EXPECT_EQ(differs(back, before), "") << "the old size, but not the old content";
    else
      EXPECT_EQ(differs(back, after), "") << "(old size " << before.size() << ")";
  }
  // "" when equal, else where they part (the contents are too long to print).
  static std::string differs(const std::string& got, const std::string& want) {
    if (got == want) return "";
    size_t i = 0;
    while (i < got.size() && i < want.size() && got[i] == want[i]) i++;
    return "size " + std::to_string(got.size()) + ", expected " + std::to_string(want.size()) +
           "; first difference at byte " + std::to_string(i) +
           (i < got.size() && got[i] == 0 ? " (reads as zero: never written)" : "");
  }
};

TEST_F(DiskSizeTest, ChmodAfterAnUnsyncedAppendNeverCommitsASizeOverUnwrittenData) {
  mount_quiet();
  uint64_t f = create("f");
  const std::string synced(3 * kPageSize, 'a');
  write_all(f, 0, synced);
  ASSERT_TRUE(fs_->fsync(f, false).ok());
  const std::string appended(2 * kPageSize + 100, 'b');
  write_all(f, synced.size(), appended);
  chmod(f, 0600);
  commit_elsewhere();
  crash();
  mount_quiet();
  expect_one_of(synced, synced + appended);
  auto a = fs_->lookup(kRootIno, "f");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->mode & 07777, 0600u) << "the chmod was committed";
  unmount();
  expect_fsck_clean();
}

TEST_F(DiskSizeTest, XattrOfANewFileNeverCommitsTheSizeOfItsUnwrittenData) {
  mount_quiet();
  uint64_t f = create("f");
  write_all(f, 0, std::string(5 * kPageSize, 'c'));
  ASSERT_TRUE(fs_->setxattr(f, "user.k", "v", 0).ok());
  commit_elsewhere();
  crash();
  mount_quiet();
  expect_one_of("", std::string(5 * kPageSize, 'c'));
  unmount();
  expect_fsck_clean();
}

TEST_F(DiskSizeTest, WritebackCarriesTheSizeWithTheDataItMapped) {
  mount_quiet();
  uint64_t f = create("f");
  const std::string data(4 * kPageSize + 7, 'd');
  write_all(f, 0, data);
  chmod(f, 0640);  // stores the old size
  ASSERT_TRUE(static_cast<MountedFs&>(*fs_).write_back_everything().ok());
  commit_elsewhere();
  crash();
  mount_quiet();
  EXPECT_EQ(differs(read_back("f"), data), "") << "writeback commits the size with the mapping";
}

TEST_F(DiskSizeTest, FsyncStoresTheWholeSize) {
  mount_quiet();
  uint64_t f = create("f");
  const std::string data(2 * kPageSize + 1, 'e');
  write_all(f, 0, data);
  chmod(f, 0640);
  ASSERT_TRUE(fs_->fsync(f, false).ok());
  crash();
  mount_quiet();
  EXPECT_EQ(differs(read_back("f"), data), "");
}

TEST_F(DiskSizeTest, TruncateUpStoresTheZerosAskedForAndWritesTheDataBelowThemFirst) {
  mount_quiet();
  uint64_t f = create("f");
  const std::string data(kPageSize + 10, 'g');
  write_all(f, 0, data);
  SetAttr sa;
  sa.size = 6 * kPageSize;
  ASSERT_TRUE(fs_->setattr(f, sa).ok());
  commit_elsewhere();
  crash();
  mount_quiet();
  std::string want = data + std::string(6 * kPageSize - data.size(), '\0');
  EXPECT_EQ(differs(read_back("f"), want), "")
      << "the truncate committed, so the data below the zeros it added is stored";
  unmount();
  expect_fsck_clean();
}

TEST_F(DiskSizeTest, ShrinkingTruncateOverUnwrittenDataStoresNoMoreThanIsWritten) {
  mount_quiet();
  uint64_t f = create("f");
  const std::string synced(kPageSize, 'h');
  write_all(f, 0, synced);
  ASSERT_TRUE(fs_->fsync(f, false).ok());
  write_all(f, synced.size(), std::string(8 * kPageSize, 'i'));
  SetAttr sa;
  sa.size = 5 * kPageSize;
  ASSERT_TRUE(fs_->setattr(f, sa).ok());
  commit_elsewhere();
  crash();
  mount_quiet();
  expect_one_of(synced, synced + std::string(4 * kPageSize, 'i'));
  unmount();
  expect_fsck_clean();
}

// xfstests generic/098: data, then an append past a hole, then a truncate
// into the hole. Nothing is ever written between the stored size and the
// truncated one, so the truncate must store its size whole, after the
// committed truncate and after an unmount alike.
TEST_F(DiskSizeTest, TruncateIntoAHoleAboveTheStoredSizeStoresThatSize) {
  const std::string synced(32 * kPageSize, 'a');
  const std::string truncated = synced + std::string(8 * kPageSize, '\0');
  auto write_append_truncate = [&](const char* name) {
    uint64_t f = create(name);
    write_all(f, 0, synced);
    ASSERT_TRUE(fs_->fsync(f, false).ok());
    write_all(f, 64 * kPageSize, std::string(8 * kPageSize, 'b'));
    SetAttr sa;
    sa.size = truncated.size();
    ASSERT_TRUE(fs_->setattr(f, sa).ok());
  };
  mount_quiet();
  ASSERT_NO_FATAL_FAILURE(write_append_truncate("unmounted"));
  unmount();
  mount_quiet();
  EXPECT_EQ(differs(read_back("unmounted"), truncated), "") << "after an unmount";
  ASSERT_NO_FATAL_FAILURE(write_append_truncate("f"));
  commit_elsewhere();
  crash();
  mount_quiet();
  EXPECT_EQ(differs(read_back("f"), truncated), "") << "after the committed truncate";
  unmount();
  expect_fsck_clean();
}

TEST_F(DiskSizeTest, FallocateBeyondUnwrittenDataStoresTheDataFirst) {
  mount_quiet();
  uint64_t f = create("f");
  const std::string data(2 * kPageSize, 'j');
  write_all(f, 0, data);
  ASSERT_TRUE(fs_->fallocate(f, 0, 0, 5 * kPageSize).ok());
  commit_elsewhere();
  crash();
  mount_quiet();
  EXPECT_EQ(differs(read_back("f"), data + std::string(3 * kPageSize, '\0')), "");
  unmount();
  expect_fsck_clean();
}

TEST_F(DiskSizeTest, TheInMemorySizeStaysWhatWriteSet) {
  mount_quiet();
  uint64_t f = create("f");
  write_all(f, 0, std::string(3 * kPageSize + 5, 'k'));
  chmod(f, 0600);
  auto a = fs_->getattr(f);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size, 3 * kPageSize + 5);
  // The inode cache keeps an inode whose stored size is behind: reloaded
  // from its record, it would lose the size of the dirty pages.
  fs_->forget(f, 1);
  static_cast<MountedFs&>(*fs_).trim_inode_cache(0);
  a = fs_->getattr(f);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size, 3 * kPageSize + 5);
  EXPECT_EQ(differs(read_back("f"), std::string(3 * kPageSize + 5, 'k')), "");
}

}  // namespace
}  // namespace stablefs
