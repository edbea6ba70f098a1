#include "core/allocator.h"

#include <gtest/gtest.h>

#include "core/inode_table.h"
#include "core/io/mem_device.h"
#include "core/mkfs.h"

namespace stablefs {
namespace {

// A freshly made filesystem on an in-memory device, with its journal.
struct Fixture {
  explicit Fixture(uint64_t blocks = kMinBlocks) : dev(blocks) {
    EXPECT_TRUE(make_filesystem(dev, {}).ok());
    AlignedBlock b;
    EXPECT_TRUE(dev.read(0, b.data(), kBlockSize).ok());
    sb = *decode_superblock(b.data(), 0, blocks, nullptr);
    cache = std::make_unique<BufferCache>(dev);
    JournalOptions jo;
    jo.persist_tail = [](JournalPosition) { return Status::Ok(); };
    jo.on_commit = [this](uint64_t txid) {
      if (alloc) alloc->release_committed(txid);
    };
    journal = std::make_unique<Journal>(dev, *cache, JournalGeometry{sb.journal_start, sb.journal_blocks},
                                        JournalPosition{0, sb.journal_tail_txid}, jo);
    alloc = std::move(Allocator::load(*cache, sb).value());
  }
  ~Fixture() { (void)journal->shutdown(); }
  MemDevice dev;
  Superblock sb;
  std::unique_ptr<BufferCache> cache;
  std::unique_ptr<Journal> journal;
  std::unique_ptr<Allocator> alloc;
};

TEST(Allocator, NeverHandsOutMetadataBlocks) {
  Fixture f;
  Handle h = f.journal->start();
  auto r = f.alloc->alloc_blocks(h, 1, 1);
  ASSERT_TRUE(r.ok());
  EXPECT_GE(r->start, f.sb.data_start);
}

TEST(Allocator, AllocatesContiguousRunsNearTheGoal) {
  Fixture f;
  Handle h = f.journal->start();
  auto a = f.alloc->alloc_blocks(h, f.sb.data_start + 100, 16);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->start, f.sb.data_start + 100);
  EXPECT_EQ(a->count, 16u);
  auto b = f.alloc->alloc_blocks(h, f.sb.data_start + 100, 4);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->start, f.sb.data_start + 116);  // next free after the first run
}

TEST(Allocator, FreedBlockIsNotReusedBeforeItsFreeingCommit) {
  Fixture f;
  uint64_t block;
  {
    Handle h = f.journal->start();
    block = f.alloc->alloc_blocks(h, f.sb.data_start, 1)->start;
  }
  ASSERT_TRUE(f.journal->commit().ok());
  uint64_t free_before = f.alloc->free_block_count();
  {
    Handle h = f.journal->start();
    ASSERT_TRUE(f.alloc->free_blocks(h, {block, 1}).ok());
    // Still in use in memory: the freeing transaction is not durable yet.
    auto again = f.alloc->alloc_blocks(h, block, 1);
    ASSERT_TRUE(again.ok());
    EXPECT_NE(again->start, block);
    EXPECT_EQ(f.alloc->pending_free_blocks(), 1u);
  }
  ASSERT_TRUE(f.journal->commit().ok());  // on_commit releases it
  EXPECT_EQ(f.alloc->pending_free_blocks(), 0u);
  EXPECT_EQ(f.alloc->free_block_count(), free_before);  // -1 (again) +1 (released)
  Handle h = f.journal->start();
  auto reuse = f.alloc->alloc_blocks(h, block, 1);
  ASSERT_TRUE(reuse.ok());
  EXPECT_EQ(reuse->start, block);
}

// A redirect-on-write rewrite (small, goal taken) reuses the blocks the
// previous commit freed, so a rewrite workload stays in space it already
// wrote; a streaming request still gets fresh contiguous space; and no
// block is reused before its freeing commit.
TEST(Allocator, SmallRewritesReuseBlocksFreedByTheLastCommit) {
  Fixture f;
  PhysRange file;
  {
    Handle h = f.journal->start();
    file = *f.alloc->alloc_blocks(h, f.sb.data_start, 64);
  }
  ASSERT_EQ(file.count, 64u);
  ASSERT_TRUE(f.journal->commit().ok());
  uint64_t old_block = file.start + 10;  // the block a rewrite replaces
  for (int round = 0; round < 3; round++) {
    auto fresh = f.alloc->reserve_blocks(old_block, 1);  // goal taken: a rewrite
    ASSERT_TRUE(fresh.ok());
    Handle h = f.journal->start();
    ASSERT_TRUE(f.alloc->commit_reserved(h, *fresh).ok());
    ASSERT_TRUE(f.alloc->free_blocks(h, {old_block, 1}).ok());
    // Not reusable inside its freeing transaction.
    auto early = f.alloc->reserve_blocks(fresh->start, 1);
    ASSERT_TRUE(early.ok());
    EXPECT_NE(early->start, old_block);
    f.alloc->unreserve(*early);
    h = Handle();
    ASSERT_TRUE(f.journal->commit().ok());
    // The next rewrite gets exactly the block that commit freed.
    auto next = f.alloc->reserve_blocks(fresh->start, 1);
    ASSERT_TRUE(next.ok());
    EXPECT_EQ(next->start, old_block) << "round " << round;
    f.alloc->unreserve(*next);
    old_block = fresh->start;
  }
  // A streaming write wants contiguous fresh space, not freed singles.
  auto stream = f.alloc->reserve_blocks(0, 256);
  ASSERT_TRUE(stream.ok());
  EXPECT_EQ(stream->count, 256u);
  EXPECT_GT(stream->start, file.start + file.count);
}

TEST(Allocator, ReservationIsInvisibleOnDiskUntilCommitted) {
  Fixture f;
  auto r = f.alloc->reserve_blocks(f.sb.data_start + 10, 8);
  ASSERT_TRUE(r.ok());
  // A second reservation does not overlap.
  auto r2 = f.alloc->reserve_blocks(f.sb.data_start + 10, 8);
  ASSERT_TRUE(r2.ok());
  EXPECT_GE(r2->start, r->start + r->count);
  f.alloc->unreserve(*r2);
  {
    Handle h = f.journal->start();
    ASSERT_TRUE(f.alloc->commit_reserved(h, *r).ok());
  }
  ASSERT_TRUE(f.journal->shutdown().ok());
  // After checkpoint the on-disk bitmap has exactly the committed run.
  Allocator* reloaded = nullptr;
  BufferCache fresh(f.dev);
  auto a = Allocator::load(fresh, f.sb);
  ASSERT_TRUE(a.ok());
  reloaded = a->get();
  Handle none;
  auto next = reloaded->reserve_blocks(f.sb.data_start + 10, 1);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->start, r->start + r->count);
}

TEST(Allocator, ReportsEnospcWhenFull) {
  Fixture f;
  Handle h = f.journal->start();
  uint64_t total = f.alloc->free_block_count();
  uint64_t got = 0;
  for (;;) {
    auto r = f.alloc->reserve_blocks(0, 1 << 20);
    if (!r.ok()) {
      EXPECT_EQ(r.error(), ENOSPC);
      break;
    }
    got += r->count;
  }
  EXPECT_EQ(got, total);
  EXPECT_EQ(f.alloc->free_block_count(), 0u);
}

TEST(Allocator, InodesAreAllocatedAndFreedThroughTheBitmap) {
  Fixture f;
  Handle h = f.journal->start();
  auto a = f.alloc->alloc_inode(h);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, 2u);  // 0 reserved, 1 is the root
  ASSERT_TRUE(f.alloc->free_inode(h, *a).ok());
  auto b = f.alloc->alloc_inode(h);
  ASSERT_TRUE(b.ok());
  EXPECT_NE(*b, *a);  // not before the freeing commit
}

TEST(InodeTable, RoundTripsThroughTheJournal) {
  Fixture f;
  InodeTable t(*f.cache, f.sb);
  DiskInode d;
  d.mode = 0100644;
  d.size = 12345;
  d.mtime = {1700000000, 123456789};
  d.generation = 7;
  {
    Handle h = f.journal->start();
    ASSERT_TRUE(t.write(h, 42, d).ok());
  }
  ASSERT_TRUE(f.journal->shutdown().ok());
  BufferCache fresh(f.dev);
  InodeTable t2(fresh, f.sb);
  auto r = t2.read(42);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->mode, 0100644u);
  EXPECT_EQ(r->size, 12345u);
  EXPECT_EQ(r->mtime.nsec, 123456789u);
  EXPECT_EQ(r->generation, 7u);
  EXPECT_FALSE(t.valid(0));
  EXPECT_FALSE(t.valid(f.sb.inode_count + 1));
}

}  // namespace
}  // namespace stablefs
