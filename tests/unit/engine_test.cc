// The engine (core/mounted_fs) driven directly, without FUSE, on an
// in-memory device: persistence, crash recovery and the stable-page
// protocol of the write path.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <shared_mutex>
#include <thread>

#include <map>

#include <gtest/gtest.h>

#include "core/base/checksum.h"
#include "tests/unit/engine_fixture.h"

namespace stablefs {
namespace {

TEST_F(EngineTest, WrittenDataSurvivesRemount) {
  mount();
  uint64_t ino = create("f");
  std::string data(10000, 'x');
  data[5000] = 'y';
  ASSERT_EQ(*fs_->write(ino, 100, data.data(), data.size()), data.size());
  unmount();
  mount();
  auto a = fs_->lookup(kRootIno, "f");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size, 10100u);
  std::string back(10100, '\0');
  ASSERT_EQ(*fs_->read(a->ino, 0, back.size(), back.data()), back.size());
  EXPECT_EQ(back.substr(0, 100), std::string(100, '\0'));
  EXPECT_EQ(back.substr(100), data);
}

TEST_F(EngineTest, FsyncedDataSurvivesCrash) {
  mount();
  uint64_t ino = create("durable");
  std::string data(8192, 'd');
  ASSERT_TRUE(fs_->write(ino, 0, data.data(), data.size()).ok());
  ASSERT_TRUE(fs_->fsync(ino, false).ok());
  create("not-synced");
  crash();
  mount();
  EXPECT_EQ(read_back("durable"), data);
}

// A journal that aborts tells the mount from its commit thread (on_abort,
// which updates the counters) after it has woken the unmount waiting for
// the commit; destroying the mount at once must still wait for that call.
// It used to free the counters first: a use after free that ASan reports
// (scripts/sanitize.sh) and that a plain build silently survives.
TEST_F(EngineTest, MountDestroyedRightAfterItsJournalAbortedIsSafe) {
  const std::string data(3 * 4096, 'a');
  for (int i = 0; i < 10; i++) {
    mount();
    uint64_t ino = create(("f" + std::to_string(i)).c_str());
    ASSERT_TRUE(fs_->write(ino, 0, data.data(), data.size()).ok());
    crash();  // the unmount's final commit fails: the journal aborts
  }
}

// A symlink whose target lives in a block and whose recorded size is 0
// (found while writing mount_fuzzer's readlink check): readlink must
// fail, never hand the kernel an empty target.
TEST_F(EngineTest, BlockSymlinkWithSizeZeroIsAnErrorNeverAnEmptyTarget) {
  mount();
  auto l = fs_->symlink(kRootIno, "l", std::string(300, 'L'), {});
  ASSERT_TRUE(l.ok());
  unmount();
  edit_inode(dev_, l->ino, [](DiskInode& d) { d.size = 0; });
  mount();
  auto r = fs_->readlink(l->ino);
  ASSERT_FALSE(r.ok()) << "readlink returned '" << *r << "'";
  EXPECT_EQ(r.error(), EUCLEAN);
}

// The symlink a directory fsync promised is there after a crash, target
// and all (it used to come back empty: the target was written by a later
// writeback, after the commit of the entry).
TEST_F(EngineTest, LongSymlinkTargetIsDurableWithItsEntry) {
  mount();
  const std::string short_target = "/short/target";
  const std::string long_target = "/" + std::string(3000, 'L');
  ASSERT_TRUE(fs_->symlink(kRootIno, "s", short_target, {}).ok());
  ASSERT_TRUE(fs_->symlink(kRootIno, "l", long_target, {}).ok());
  ASSERT_TRUE(fs_->fsyncdir(kRootIno, false).ok());
  crash();
  mount();
  for (auto [name, want] : {std::pair{"s", short_target}, std::pair{"l", long_target}}) {
    auto a = fs_->lookup(kRootIno, name);
    ASSERT_TRUE(a.ok()) << name;
    EXPECT_EQ(a->size, want.size());
    auto t = fs_->readlink(a->ino);
    ASSERT_TRUE(t.ok()) << name << ": errno " << t.error();
    EXPECT_EQ(*t, want) << name;
  }
}

// A symlink whose target cannot be stored is not created: no entry, no
// inode left allocated, no block leaked, and a clean fsck.
class SymlinkFaultTest : public EngineFaultTest {
 protected:
  void expect_not_left_behind(uint64_t files_free_before) {
    EXPECT_EQ(fs_->lookup(kRootIno, "ln").error(), ENOENT);
    ASSERT_TRUE(fs_->fsyncdir(kRootIno, false).ok());  // a freed inode is reusable once committed
    EXPECT_EQ(fs_->statfs()->files_free, files_free_before) << "the inode was not freed";
    unmount();
    expect_fsck_clean();
  }
  const std::string target_ = "/" + std::string(1000, 't');
};

TEST_F(SymlinkFaultTest, TargetWriteErrorLeavesNothingBehind) {
  FaultDevice& faults = mount_with_faults();
  const uint64_t files_free = fs_->statfs()->files_free;
  auto layout = plan_layout(dev_.block_count());
  ASSERT_TRUE(layout.ok());
  for (uint64_t b = layout->data_start; b < dev_.block_count(); b++)
    faults.fail_block(b, FaultOn::kWrite);
  auto r = fs_->symlink(kRootIno, "ln", target_, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), EIO);
  EXPECT_GT(faults.injected_faults(), 0u);
  faults.clear_faults();
  expect_not_left_behind(files_free);
}

// A failed writeback keeps the data: the pages stay dirty, the file is not
// charged for blocks it did not get, fsync reports the error, and once the
// device works again the data reaches the disk and survives a crash.
TEST_F(EngineFaultTest, FailedWritebackKeepsThePagesDirty) {
  FaultDevice& faults = mount_with_faults();
  auto& m = static_cast<MountedFs&>(*fs_);
  uint64_t ino = create("f");
  ASSERT_TRUE(fs_->fsync(ino, false).ok());
  const std::string data(3 * kBlockSize, 'w');
  ASSERT_EQ(*fs_->write(ino, 0, data.data(), data.size()), data.size());
  auto layout = plan_layout(dev_.block_count());
  ASSERT_TRUE(layout.ok());
  for (uint64_t b = layout->data_start; b < dev_.block_count(); b++)
    faults.fail_block(b, FaultOn::kWrite);
  // SEEK_DATA writes back first: it fails, or finds the data; never a hole.
  auto data_at = fs_->seek_data_hole(ino, 0, SEEK_DATA);
  if (data_at.ok()) EXPECT_EQ(*data_at, 0u);
  else EXPECT_NE(data_at.error(), ENXIO) << "SEEK_DATA: no data where the unwritten data is";
  EXPECT_EQ(fs_->fsync(ino, false).error(), EIO);
  EXPECT_EQ(m.page_cache_stats().dirty_pages, 3u) << "the only copy of the data was dropped";
  EXPECT_EQ(fs_->getattr(ino)->blocks512, 0u) << "blocks charged for a failed write";
  std::string back(data.size(), '\0');
  ASSERT_EQ(*fs_->read(ino, 0, back.size(), back.data()), back.size());
  EXPECT_EQ(back, data);
  faults.clear_faults();
  ASSERT_TRUE(fs_->fsync(ino, false).ok());
  EXPECT_EQ(m.page_cache_stats().dirty_pages, 0u);
  EXPECT_EQ(fs_->getattr(ino)->blocks512, 3u * kBlockSize / 512);
  crash();
  mount();
  EXPECT_EQ(read_back("f"), data);
}

// A failed rewrite leaves the committed state alone: the old blocks keep
// their data, the new blocks are not leaked, the old ones not freed, and
// the new data stays dirty until a later writeback succeeds.
TEST_F(EngineFaultTest, FailedRewriteKeepsTheOldBlocksAndTheNewDataDirty) {
  FaultDevice& faults = mount_with_faults(redirect_only());
  auto& m = static_cast<MountedFs&>(*fs_);
  uint64_t ino = create("f");
  const std::string old_data(3 * kBlockSize, 'o');
  ASSERT_EQ(*fs_->write(ino, 0, old_data.data(), old_data.size()), old_data.size());
  ASSERT_TRUE(fs_->fsync(ino, false).ok());
  // A rewrite of the middle block and of a block past the old end (a hole).
  const std::string mid(kBlockSize, 'n'), tail(kBlockSize, 't');
  ASSERT_EQ(*fs_->write(ino, kBlockSize, mid.data(), mid.size()), mid.size());
  ASSERT_EQ(*fs_->write(ino, 4 * kBlockSize, tail.data(), tail.size()), tail.size());
  auto layout = plan_layout(dev_.block_count());
  ASSERT_TRUE(layout.ok());
  for (uint64_t b = layout->data_start; b < dev_.block_count(); b++)
    faults.fail_block(b, FaultOn::kWrite);
  EXPECT_EQ(fs_->fsync(ino, false).error(), EIO);
  faults.clear_faults();
  EXPECT_EQ(m.page_cache_stats().dirty_pages, 2u);
  EXPECT_EQ(fs_->getattr(ino)->blocks512, 3u * kBlockSize / 512);
  // Commit whatever the failed writeback left in the journal, then crash
  // before the new data is written again.
  uint64_t other = create("g");
  ASSERT_TRUE(fs_->fsync(other, false).ok());
  crash();
  mount();
  std::string back = read_back("f");
  EXPECT_EQ(back.substr(0, old_data.size()), old_data) << "the old blocks lost their data";
  EXPECT_EQ(back.substr(old_data.size()), std::string(back.size() - old_data.size(), '\0'));
  unmount();
  expect_fsck_clean();
}

// An xattr that could not be stored is not served either (the map used to
// change before the store, so get/list answered with the lost value).
TEST_F(EngineFaultTest, XattrThatCouldNotBeStoredIsNotServed) {
  mount_with_faults();
  uint64_t f = create("f");
  uint64_t big = create("big");
  ASSERT_EQ(fs_->fallocate(big, 0, 0, dev_.block_count() * kBlockSize).error(), ENOSPC);
  EXPECT_EQ(fs_->setxattr(f, "user.k", "value", 0).error(), ENOSPC);
  EXPECT_EQ(fs_->getxattr(f, "user.k").error(), ENODATA);
  ASSERT_TRUE(fs_->listxattr(f).ok());
  EXPECT_EQ(*fs_->listxattr(f), "");
}

// A journal write error aborts the journal and turns the filesystem
// read-only: later changes get EROFS, reads go on, and after a remount
// (replay) everything fsync'd before is there and fsck is clean.
TEST_F(EngineFaultTest, JournalWriteErrorTurnsTheFilesystemReadOnly) {
  FaultDevice& faults = mount_with_faults();
  uint64_t a = create("a");
  const std::string data(2 * kBlockSize, 'a');
  ASSERT_EQ(*fs_->write(a, 0, data.data(), data.size()), data.size());
  ASSERT_TRUE(fs_->fsync(a, false).ok());
  ASSERT_TRUE(fs_->fsyncdir(kRootIno, false).ok());
  auto layout = plan_layout(dev_.block_count());
  ASSERT_TRUE(layout.ok());
  for (uint64_t b = 0; b < layout->journal_blocks; b++)
    faults.fail_block(layout->journal_start + b, FaultOn::kWrite);
  uint64_t b = create("b");
  ASSERT_EQ(*fs_->write(b, 0, data.data(), data.size()), data.size());
  EXPECT_EQ(fs_->fsync(b, false).error(), EIO);
  // The abort reaches the engine from the commit thread: wait for it.
  bool read_only = false;
  for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
       !read_only && std::chrono::steady_clock::now() < until;
       std::this_thread::sleep_for(std::chrono::milliseconds(1)))
    read_only = fs_->mknod(kRootIno, "c", S_IFREG | 0644, 0, {}).error() == EROFS;
  ASSERT_TRUE(read_only) << "writes after a journal abort must fail with EROFS";
  EXPECT_EQ(static_cast<MountedFs&>(*fs_).counters().journal_aborted, uint64_t(EIO));
  EXPECT_EQ(fs_->write(a, 0, "x", 1).error(), EROFS);
  EXPECT_EQ(read_back("a"), data) << "reads keep working";
  faults.clear_faults();
  crash();
  mount();
  EXPECT_EQ(read_back("a"), data);
  unmount();
  expect_fsck_clean();
}

// A small read that misses fetches the rest of its 64 KiB cluster in the
// same request (verified and cached), so reading a neighbour costs no I/O;
// a device error in the part nobody asked for does not fail the read.
TEST_F(EngineFaultTest, SmallReadFetchesItsClusterAndSurvivesABadNeighbour) {
  mount();
  uint64_t ino = create("f");
  std::string data;
  for (int i = 0; i < 32; i++) data += std::string(kBlockSize, char('a' + i));
  ASSERT_EQ(*fs_->write(ino, 0, data.data(), data.size()), data.size());
  unmount();
  FaultDevice& faults = mount_with_faults();
  auto& m = static_cast<MountedFs&>(*fs_);
  ino = fs_->lookup(kRootIno, "f")->ino;
  char buf[kBlockSize];
  const uint64_t before = m.counters().bytes_read;
  ASSERT_EQ(*fs_->read(ino, 2 * kBlockSize, kBlockSize, buf), kBlockSize);
  EXPECT_EQ(std::string(buf, kBlockSize), data.substr(2 * kBlockSize, kBlockSize));
  EXPECT_EQ(m.counters().bytes_read - before, 14 * kBlockSize) << "pages 2..15 of the cluster";
  const uint64_t reads = faults.reads();
  ASSERT_EQ(*fs_->read(ino, 9 * kBlockSize, kBlockSize, buf), kBlockSize);
  EXPECT_EQ(std::string(buf, kBlockSize), data.substr(9 * kBlockSize, kBlockSize));
  EXPECT_EQ(faults.reads(), reads) << "a cached neighbour needs no device read";
  // Page 20's block fails: reading page 17 (same cluster) still works,
  // and reading page 20 itself is EIO.
  auto layout = plan_layout(dev_.block_count());
  ASSERT_TRUE(layout.ok());
  for (uint64_t b = layout->data_start; b < dev_.block_count(); b++) {
    std::vector<uint8_t> blk = dev_.durable_block(b);
    if (std::memcmp(blk.data(), data.data() + 20 * kBlockSize, kBlockSize) == 0)
      faults.fail_block(b, FaultOn::kRead);
  }
  ASSERT_EQ(*fs_->read(ino, 17 * kBlockSize, kBlockSize, buf), kBlockSize);
  EXPECT_EQ(std::string(buf, kBlockSize), data.substr(17 * kBlockSize, kBlockSize));
  EXPECT_EQ(fs_->read(ino, 20 * kBlockSize, kBlockSize, buf).error(), EIO);
}

// Writeback errors as the kernel's errseq: every open file description
// hears of an error once, whichever checks first; one opened later does
// not, unless nobody has heard of it yet.
TEST_F(EngineFaultTest, WritebackErrorIsReportedOncePerOpenFile) {
  FaultDevice& faults = mount_with_faults(redirect_only());
  auto& m = static_cast<MountedFs&>(*fs_);
  uint64_t ino = create("f");
  uint64_t a = fs_->sample_write_errors(ino), b = fs_->sample_write_errors(ino);
  const std::string data(2 * kBlockSize, 'e');
  ASSERT_EQ(*fs_->write(ino, 0, data.data(), data.size()), data.size());
  auto layout = plan_layout(dev_.block_count());
  ASSERT_TRUE(layout.ok());
  for (uint64_t blk = layout->data_start; blk < dev_.block_count(); blk++)
    faults.fail_block(blk, FaultOn::kWrite);
  EXPECT_FALSE(m.writeback_all().ok());  // background writeback fails
  faults.clear_faults();
  // A's fsync writes the data now, and still reports the earlier failure.
  EXPECT_EQ(fs_->fsync(ino, false, &a).error(), EIO);
  EXPECT_TRUE(fs_->fsync(ino, false, &a).ok()) << "reported twice to one description";
  EXPECT_EQ(fs_->flush(ino, &b).error(), EIO) << "B never heard of it";
  EXPECT_TRUE(fs_->flush(ino, &b).ok());
  uint64_t c = fs_->sample_write_errors(ino);
  EXPECT_TRUE(fs_->fsync(ino, false, &c).ok()) << "opened after everyone saw it";
  // An error nobody has heard of reaches the next opener.
  for (uint64_t blk = layout->data_start; blk < dev_.block_count(); blk++)
    faults.fail_block(blk, FaultOn::kWrite);
  ASSERT_EQ(*fs_->write(ino, 0, "x", 1), 1u);
  EXPECT_FALSE(m.writeback_all().ok());
  faults.clear_faults();
  uint64_t d = fs_->sample_write_errors(ino);
  EXPECT_EQ(fs_->fsync(ino, false, &d).error(), EIO);
  crash();
  mount();
  EXPECT_EQ(read_back("f"), "x" + data.substr(1));
}

// Copied from a cold source whose third chunk (copy_file_range copies 1 MiB
// at a time) cannot be read: the call fails with the error. A short count
// would tell the caller the input ended there (issue 15, item 5).
TEST_F(EngineFaultTest, CopyFileRangeReportsAnErrorMetAfterTheFirstChunks) {
  mount();
  uint64_t src = create("src");
  create("dst");
  constexpr size_t kPages = 3 * 256;  // 3 MiB
  auto page_of = [](size_t i) {
    std::string p(kPageSize, char('a' + i % 26));
    std::memcpy(p.data(), &i, sizeof i);  // every page unique
    return p;
  };
  std::string data;
  for (size_t i = 0; i < kPages; i++) data += page_of(i);
  ASSERT_EQ(*fs_->write(src, 0, data.data(), data.size()), data.size());
  ASSERT_TRUE(fs_->fsync(src, false).ok());
  unmount();
  int64_t bad = -1;  // the block holding page 600, in the third chunk
  const std::string page600 = page_of(600);
  for (uint64_t b = 0; b < dev_.block_count() && bad < 0; b++)
    if (std::memcmp(dev_.durable_block(b).data(), page600.data(), kPageSize) == 0) bad = int64_t(b);
  ASSERT_GE(bad, 0);
  FaultDevice& faults = mount_with_faults();
  src = fs_->lookup(kRootIno, "src")->ino;
  uint64_t dst = fs_->lookup(kRootIno, "dst")->ino;
  faults.fail_block(uint64_t(bad), FaultOn::kRead);
  auto r = fs_->copy_file_range(src, 0, dst, 0, data.size());
  ASSERT_FALSE(r.ok()) << "copied " << *r << " of " << data.size() << " bytes with no error";
  EXPECT_EQ(r.error(), EIO);
  EXPECT_GT(faults.injected_faults(), 0u);
}

TEST_F(SymlinkFaultTest, FullFilesystemLeavesNothingBehind) {
  mount_with_faults();
  const uint64_t files_free = fs_->statfs()->files_free;
  // Take every free block (fallocate allocates until it cannot).
  uint64_t big = create("big");
  ASSERT_EQ(fs_->fallocate(big, 0, 0, dev_.block_count() * kBlockSize).error(), ENOSPC);
  auto r = fs_->symlink(kRootIno, "ln", target_, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), ENOSPC);
  expect_not_left_behind(files_free - 1);  // "big" keeps its inode
}

TEST_F(EngineTest, RewriteGoesToANewBlock) {
  mount(redirect_only());
  uint64_t ino = create("f");
  std::string a(4096, 'a'), b(4096, 'b');
  ASSERT_TRUE(fs_->write(ino, 0, a.data(), a.size()).ok());
  ASSERT_TRUE(fs_->fsync(ino, false).ok());
  ASSERT_TRUE(fs_->write(ino, 0, b.data(), b.size()).ok());
  ASSERT_TRUE(fs_->fsync(ino, false).ok());
  // The committed block with 'a' is never overwritten in place: scan the
  // device for both patterns.
  int seen_a = 0, seen_b = 0;
  for (uint64_t blk = 0; blk < dev_.block_count(); blk++) {
    auto d = dev_.durable_block(blk);
    if (std::memcmp(d.data(), a.data(), 4096) == 0) seen_a++;
    if (std::memcmp(d.data(), b.data(), 4096) == 0) seen_b++;
  }
  EXPECT_EQ(seen_a, 1);
  EXPECT_EQ(seen_b, 1);
}

// journal_data= (the default): a short rewrite keeps its block and goes
// into the log with the commit; until the checkpoint puts it home, a read
// that misses the cache gets it from the journal, and a crash replays it.
TEST_F(EngineTest, JournaledRewriteKeepsItsBlockAndIsReadFromTheLogUntilHome) {
  MountedFs& m = mount(journaled_rewrites());
  uint64_t ino = create("f");
  const std::string a(3 * kBlockSize, 'a'), b(kBlockSize, 'b');
  ASSERT_EQ(*fs_->write(ino, 0, a.data(), a.size()), a.size());
  ASSERT_TRUE(fs_->fsync(ino, false).ok());
  const uint64_t blocks = fs_->getattr(ino)->blocks512;
  ASSERT_EQ(*fs_->write(ino, kBlockSize, b.data(), b.size()), b.size());
  ASSERT_TRUE(fs_->fsync(ino, false).ok());
  EXPECT_EQ(m.journal_stats().data_blocks_logged, 1u);
  EXPECT_EQ(fs_->getattr(ino)->blocks512, blocks) << "a journaled rewrite took a new block";
  EXPECT_EQ(count_blocks_with(dev_, b), 1) << "the rewrite is not (only) in the log";
  const std::string want = a.substr(0, kBlockSize) + b + a.substr(0, kBlockSize);

  // Push f's pages out of the 16 MiB cache; its home block is still old.
  uint64_t big = create("big");
  const std::string chunk(1 << 20, 'z');
  for (int i = 0; i < 24; i++)
    ASSERT_EQ(*fs_->write(big, uint64_t(i) << 20, chunk.data(), chunk.size()), chunk.size());
  ASSERT_TRUE(fs_->fsync(big, false).ok());
  ASSERT_GT(m.page_cache_stats().evictions, 0u);
  EXPECT_EQ(read_back("f"), want);

  crash();
  mount(journaled_rewrites());
  EXPECT_EQ(read_back("f"), want);
  unmount();  // checkpoints: now the block itself holds b
  EXPECT_GE(count_blocks_with(dev_, b), 1);
  FsckOptions fo;
  auto r = check_filesystem(dev_, fo);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->errors, 0u);
}

// A journaled block that is freed (truncate) and reused by another file
// must not get the old image back from replay or checkpoint.
TEST_F(EngineTest, FreedJournaledBlockReusedByAnotherFileKeepsTheNewData) {
  MountedFs& m = mount(journaled_rewrites());
  uint64_t f = create("f");
  const std::string a(4 * kBlockSize, 'a'), b(kBlockSize, 'b');
  ASSERT_EQ(*fs_->write(f, 0, a.data(), a.size()), a.size());
  ASSERT_TRUE(fs_->fsync(f, false).ok());
  for (uint64_t i = 0; i < 4; i++)
    ASSERT_EQ(*fs_->write(f, i * kBlockSize, b.data(), b.size()), b.size());
  ASSERT_TRUE(fs_->fsync(f, false).ok());
  ASSERT_EQ(m.journal_stats().data_blocks_logged, 4u);
  SetAttr sa;
  sa.size = 0;
  ASSERT_TRUE(fs_->setattr(f, sa).ok());
  ASSERT_TRUE(fs_->fsync(f, false).ok());  // the free (and revokes) commit
  uint64_t g = create("g");
  const std::string c(8 * kBlockSize, 'c');
  ASSERT_EQ(*fs_->write(g, 0, c.data(), c.size()), c.size());
  ASSERT_TRUE(fs_->fsync(g, false).ok());
  crash();
  mount(journaled_rewrites());
  EXPECT_EQ(read_back("g"), c);
  EXPECT_EQ(read_back("f"), "");
  unmount();
  mount(journaled_rewrites());
  EXPECT_EQ(read_back("g"), c) << "a checkpoint wrote an old image over reused blocks";
}

TEST_F(EngineTest, NamespaceOperations) {
  mount();
  auto d = fs_->mkdir(kRootIno, "dir", 0755, {});
  ASSERT_TRUE(d.ok());
  uint64_t f = create("file", d->ino);
  EXPECT_EQ(fs_->mkdir(kRootIno, "dir", 0755, {}).error(), EEXIST);
  EXPECT_EQ(fs_->rmdir(kRootIno, "dir").error(), ENOTEMPTY);
  ASSERT_TRUE(fs_->link(f, kRootIno, "hard").ok());
  EXPECT_EQ(fs_->getattr(f)->nlink, 2u);
  ASSERT_TRUE(fs_->rename(kRootIno, "hard", kRootIno, "hard2", 0, Creds{}).ok());
  EXPECT_EQ(fs_->lookup(kRootIno, "hard").error(), ENOENT);
  EXPECT_EQ(fs_->rename(kRootIno, "dir", d->ino, "sub", 0, Creds{}).error(), EINVAL);
  ASSERT_TRUE(fs_->symlink(kRootIno, "ln", "target/path", {}).ok());
  auto l = fs_->lookup(kRootIno, "ln");
  EXPECT_EQ(*fs_->readlink(l->ino), "target/path");
  std::string longname(256, 'n');
  EXPECT_EQ(fs_->mknod(kRootIno, longname, S_IFREG | 0644, 0, {}).error(), ENAMETOOLONG);
  ASSERT_TRUE(fs_->unlink(d->ino, "file").ok());
  ASSERT_TRUE(fs_->rmdir(kRootIno, "dir").ok());
  unmount();
  mount();
  EXPECT_EQ(fs_->lookup(kRootIno, "dir").error(), ENOENT);
  EXPECT_TRUE(fs_->lookup(kRootIno, "hard2").ok());
  EXPECT_EQ(fs_->getattr(kRootIno)->nlink, 2u);
}

// The inode cache does not grow with every inode ever touched: inodes the
// kernel forgot are dropped, and reloading one gives back the same state,
// including attributes and data written just before it was dropped.
TEST_F(EngineTest, ForgottenInodesLeaveTheCacheAndReloadIntact) {
  MountedFs& m = mount();
  std::vector<uint64_t> inos;
  for (int i = 0; i < 300; i++) {
    uint64_t ino = create(("f" + std::to_string(i)).c_str());
    std::string data = "content of " + std::to_string(i);
    ASSERT_TRUE(fs_->write(ino, 0, data.data(), data.size()).ok());
    ASSERT_TRUE(fs_->setxattr(ino, "user.k", std::to_string(i), 0).ok());
    inos.push_back(ino);
  }
  uint64_t busy = inos[7];  // still referenced by the kernel: stays
  for (uint64_t ino : inos)
    if (ino != busy) fs_->forget(ino, 1);
  // Attributes of the writes above are not journalled until writeback: such
  // inodes must stay until then.
  size_t before = m.cached_inodes();
  ASSERT_GE(before, 300u);
  ASSERT_TRUE(m.writeback_all().ok());
  size_t dropped = m.trim_inode_cache(0);
  EXPECT_GE(dropped, 299u);
  EXPECT_EQ(m.cached_inodes(), before - dropped);
  EXPECT_TRUE(fs_->getattr(busy).ok());

  for (int i = 0; i < 300; i++) {
    auto a = fs_->lookup(kRootIno, "f" + std::to_string(i));
    ASSERT_TRUE(a.ok()) << i;
    EXPECT_EQ(a->ino, inos[i]);
    std::string want = "content of " + std::to_string(i);
    EXPECT_EQ(a->size, want.size());
    std::string back(want.size(), '\0');
    ASSERT_EQ(*fs_->read(a->ino, 0, back.size(), back.data()), back.size());
    EXPECT_EQ(back, want);
    EXPECT_EQ(*fs_->getxattr(a->ino, "user.k"), std::to_string(i));
  }
  // A reloaded inode is a full citizen: rewrite, fsync, crash, replay.
  std::string again(5000, 'z');
  ASSERT_TRUE(fs_->write(inos[3], 0, again.data(), again.size()).ok());
  ASSERT_TRUE(fs_->fsync(inos[3], false).ok());
  crash();
  mount();
  EXPECT_EQ(read_back("f3"), again);
}

// An inode the kernel still holds, or whose attributes are not journalled
// yet, is never dropped.
TEST_F(EngineTest, InodeCacheTrimKeepsInodesInUse) {
  MountOptions o;
  o.writeback_delay_ms = 3'600'000;  // no background writeback meanwhile
  MountedFs& m = mount(o);
  uint64_t ino = create("open");
  ASSERT_TRUE(m.writeback_all().ok());
  m.trim_inode_cache(0);  // the root and anything else idle
  ASSERT_EQ(m.cached_inodes(), 1u);  // only "open": the kernel holds it
  fs_->forget(ino, 1);
  std::string data(4096, 'q');
  ASSERT_TRUE(fs_->write(ino, 0, data.data(), data.size()).ok());
  // Lookups 0 now, but dirty attributes (size, mtime not yet journalled):
  // kept, or the new size would be lost.
  EXPECT_EQ(m.trim_inode_cache(0), 0u);
  EXPECT_EQ(m.cached_inodes(), 1u);

  ASSERT_TRUE(m.writeback_all().ok());
  EXPECT_GE(m.trim_inode_cache(0), 1u);
  EXPECT_EQ(fs_->getattr(ino)->size, 4096u);
}

// A metadata cache far smaller than the metadata: blocks are evicted and
// read back (and verified) again, and nothing is lost, before or after a
// crash.
TEST_F(EngineTest, TinyMetadataCacheEvictsAndLosesNothing) {
  MountOptions o;
  o.meta_cache_bytes = 16 * kBlockSize;
  MountedFs& m = mount(o);
  std::map<std::string, std::string> want;
  for (int d = 0; d < 12; d++) {
    std::string dir = "d" + std::to_string(d);
    auto da = fs_->mkdir(kRootIno, dir, 0755, {});
    ASSERT_TRUE(da.ok());
    for (int f = 0; f < 40; f++) {
      std::string name = "f" + std::to_string(f);
      uint64_t ino = create(name.c_str(), da->ino);
      std::string data = dir + "/" + name + std::string(size_t(f * 97), 'x');
      ASSERT_TRUE(fs_->write(ino, 0, data.data(), data.size()).ok());
      ASSERT_TRUE(fs_->fsync(ino, false).ok());
      fs_->forget(ino, 1);
      want[dir + "/" + name] = data;
    }
    fs_->forget(da->ino, 1);
    m.trim_inode_cache(0);  // let directories go, so their blocks can too
    if (d % 3 == 2) {
      ASSERT_TRUE(m.checkpoint().ok());  // blocks home: evictable
    }
  }
  EXPECT_GT(m.metadata_evictions(), 0u);
  auto check = [&](const char* when) {
    for (auto& [path, data] : want) {
      auto slash = path.find('/');
      auto d = fs_->lookup(kRootIno, path.substr(0, slash));
      ASSERT_TRUE(d.ok()) << when << " " << path;
      ASSERT_EQ(read_back(path.substr(slash + 1), d->ino), data) << when << " " << path;
    }
  };
  check("before the crash");
  uint64_t evicted = m.metadata_evictions();
  crash();
  MountedFs& again = mount(o);
  check("after the crash");
  EXPECT_GT(again.metadata_evictions() + evicted, evicted);
  FsckOptions fo;
  fo.scrub = fo.read_only = true;
  auto fsck = check_filesystem(dev_, fo);
  ASSERT_TRUE(fsck.ok());
  EXPECT_EQ(fsck->errors, 0u);
  EXPECT_EQ(fsck->checksum_mismatches, 0u);
}

// The same with threads: creates, writes, fsyncs, reads and checkpoints
// race with evictions (run under TSan too).
TEST_F(EngineTest, TinyMetadataCacheUnderConcurrentUse) {
  MountOptions o;
  o.meta_cache_bytes = 16 * kBlockSize;
  MountedFs& m = mount(o);
  constexpr int kThreads = 4, kFiles = 60;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      auto da = fs_->mkdir(kRootIno, "t" + std::to_string(t), 0755, {});
      if (!da.ok()) return (void)failures++;
      for (int f = 0; f < kFiles; f++) {
        std::string name = "f" + std::to_string(f);
        auto a = fs_->mknod(da->ino, name, S_IFREG | 0644, 0, {});
        if (!a.ok()) return (void)failures++;
        std::string data(size_t(100 + f * 61), char('a' + t));
        if (!fs_->write(a->ino, 0, data.data(), data.size()).ok()) failures++;
        if (f % 4 == 0 && !fs_->fsync(a->ino, false).ok()) failures++;
        if (f % 15 == 14 && !m.checkpoint().ok()) failures++;
        // Read back an earlier file by name: its blocks may have been evicted.
        auto back = fs_->lookup(da->ino, "f" + std::to_string(f / 2));
        if (!back.ok()) failures++;
        fs_->forget(a->ino, 1);
        if (back.ok()) fs_->forget(back->ino, 1);
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);
  m.trim_inode_cache(0);
  ASSERT_TRUE(m.checkpoint().ok());
  EXPECT_GT(m.metadata_evictions(), 0u);
  unmount();
  FsckOptions fo;
  fo.scrub = fo.read_only = true;
  auto fsck = check_filesystem(dev_, fo);
  ASSERT_TRUE(fsck.ok());
  EXPECT_EQ(fsck->errors, 0u);
  EXPECT_EQ(fsck->checksum_mismatches, 0u);
  EXPECT_EQ(fsck->inodes, 1u + kThreads * (1 + kFiles));
}

}  // namespace
}  // namespace stablefs
