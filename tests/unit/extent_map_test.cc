// ExtentMap: the in-memory extent map, its on-disk radix tree, and the
// validation of that tree on load. Every round trip commits through a real
// Journal, checkpoints, and reloads from a fresh BufferCache, so the tree is
// read back from the device and verified.
#include "core/extent_map.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "core/base/endian.h"
#include "core/io/mem_device.h"

namespace stablefs {
namespace {

constexpr uint64_t kIno = 42;
constexpr uint64_t kDeviceBlocks = 8192;  // 32 MiB
constexpr JournalGeometry kLog{2, 1024};
constexpr uint64_t kFirstNodeBlock = 6000;  // tree nodes above, data below
constexpr uint64_t kTop = uint64_t(1) << 32;

std::vector<Extent> all(const ExtentMap& m) {
  std::vector<Extent> v;
  for (const auto& [l, e] : m.extents()) v.push_back(e);
  return v;
}

class ExtentMapTest : public ::testing::Test {
 protected:
  ExtentMapTest() {
    na_.alloc = [this](Handle&) -> Result<uint64_t> {
      if (fail_alloc_) return err(ENOSPC);
      uint64_t b;
      if (!reusable_.empty()) {
        b = *reusable_.begin();
        reusable_.erase(reusable_.begin());
      } else {
        if (next_node_ >= kDeviceBlocks) return err(ENOSPC);
        b = next_node_++;
      }
      EXPECT_TRUE(live_.insert(b).second) << "block " << b << " handed out twice";
      return b;
    };
    // As in the engine: the free revokes and forgets the block; it becomes
    // reusable only once the freeing transaction is durable.
    na_.free = [this](Handle& h, uint64_t b) -> Status {
      EXPECT_EQ(live_.erase(b), 1u) << "freeing block " << b << " that is not a live node";
      h.revoke(b);
      cache_->forget(b);
      pending_free_.push_back(b);
      frees_++;
      return Status::Ok();
    };
    start_journal();
  }
  ~ExtentMapTest() override {
    if (journal_) {
      EXPECT_TRUE(journal_->shutdown().ok());
    }
  }

  void start_journal() {
    JournalOptions o;
    o.commit_interval = std::chrono::hours(1);  // commits only when the test asks
    o.persist_tail = [](JournalPosition) { return Status::Ok(); };
    journal_ = std::make_unique<Journal>(dev_, *cache_, kLog, tail_, o);
  }

  Status map(uint32_t l, uint32_t len, uint64_t phys, bool unwritten = false,
             std::vector<PhysRange>* replaced = nullptr) {
    Handle h = journal_->start();
    Status s = m_->map(h, *cache_, na_, l, len, phys, unwritten, replaced);
    if (s.ok()) m_->store_root(inode_);
    return s;
  }
  Status unmap(uint32_t l, uint64_t len, std::vector<PhysRange>* freed = nullptr) {
    Handle h = journal_->start();
    Status s = m_->unmap(h, *cache_, na_, l, len, freed);
    if (s.ok()) m_->store_root(inode_);
    return s;
  }
  Status mark_written(uint32_t l, uint32_t len) {
    Handle h = journal_->start();
    Status s = m_->mark_written(h, *cache_, na_, l, len);
    if (s.ok()) m_->store_root(inode_);
    return s;
  }

  // Commits, checkpoints, and loads the map again from the device alone.
  Result<std::unique_ptr<ExtentMap>> reload_from_disk(uint64_t ino = kIno) {
    Status s = journal_->shutdown();
    if (!s.ok()) return Error{s.error()};
    tail_ = journal_->log_head();  // == the tail: the log is empty now
    journal_.reset();
    cache_ = std::make_unique<BufferCache>(dev_);
    for (uint64_t b : pending_free_) reusable_.insert(b);
    pending_free_.clear();
    start_journal();
    return ExtentMap::load(*cache_, ino, inode_, kDeviceBlocks);
  }
  // Round trip that must succeed and describe exactly the same map.
  void expect_round_trip() {
    auto r = reload_from_disk();
    ASSERT_TRUE(r.ok()) << "load failed: errno " << r.error();
    EXPECT_EQ(all(**r), all(*m_));
    EXPECT_EQ((*r)->depth(), m_->depth());
    auto a = (*r)->node_blocks(), b = m_->node_blocks();
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    EXPECT_EQ(a, b);
    EXPECT_EQ(std::set<uint64_t>(b.begin(), b.end()), live_) << "node blocks leaked or lost";
    m_ = std::move(*r);
  }

  // A raw byte of a node as it is on the device.
  uint8_t device_byte(uint64_t block, size_t off) { return dev_.durable_block(block)[off]; }
  // Rewrites a node on the device with a valid checksum after `edit`.
  void rewrite_sealed(uint64_t block, const std::function<void(uint8_t*)>& edit) {
    std::vector<uint8_t> b = dev_.durable_block(block);
    edit(b.data());
    seal_meta_block(b.data(), block, decode_meta_header(b.data()).txid);
    ASSERT_TRUE(dev_.write(block, b.data(), kBlockSize).ok());
    ASSERT_TRUE(dev_.flush().ok());
  }
  // The physical block behind one logical block, 0 for a hole.
  uint64_t phys_of(uint32_t l) {
    auto e = m_->find(l);
    return e ? e->physical + (l - e->logical) : 0;
  }
  uint64_t root_pointer(int i) { return get_le64(inode_.root.data() + 8 * i); }

  MemDevice dev_{kDeviceBlocks};
  std::unique_ptr<BufferCache> cache_ = std::make_unique<BufferCache>(dev_);
  JournalPosition tail_{0, 1};
  std::unique_ptr<Journal> journal_;
  NodeAllocator na_;
  uint64_t next_node_ = kFirstNodeBlock;
  std::set<uint64_t> live_, reusable_;
  std::vector<uint64_t> pending_free_;
  int frees_ = 0;
  bool fail_alloc_ = false;
  DiskInode inode_;
  std::unique_ptr<ExtentMap> m_ = std::make_unique<ExtentMap>(kIno);
};

#define ASSERT_OK(expr) ASSERT_TRUE((expr).ok())

// ---- Inline form and depth growth ----

TEST_F(ExtentMapTest, NineExtentsStayInlineAndRoundTrip) {
  for (uint32_t i = 0; i < kInlineExtents; i++) ASSERT_OK(map(i * 10, 5, 100 + i * 10, i % 2));
  EXPECT_EQ(m_->depth(), 0);
  EXPECT_EQ(inode_.map_depth, 0);
  EXPECT_EQ(inode_.inline_count, kInlineExtents);
  EXPECT_TRUE(m_->node_blocks().empty());
  EXPECT_EQ(m_->mapped_blocks(), 45u);
  expect_round_trip();
  EXPECT_EQ(m_->find(82)->unwritten, false);
  EXPECT_EQ(m_->find(72)->unwritten, true);
}

TEST_F(ExtentMapTest, TenthExtentMovesTheMapIntoLeaves) {
  for (uint32_t i = 0; i < 10; i++) ASSERT_OK(map(i * 200, 5, 100 + i * 10));
  EXPECT_EQ(m_->depth(), 1);
  EXPECT_EQ(inode_.inline_count, 0);
  // Extents at 0..1800 step 200 occupy leaves 0,1,3,4,6,7,9,10,12,14.
  EXPECT_EQ(m_->node_blocks().size(), 10u);
  EXPECT_NE(root_pointer(0), 0u);
  EXPECT_EQ(root_pointer(15), 0u);
  expect_round_trip();
}

TEST_F(ExtentMapTest, MappingPastTheRootCoverageGrowsTheTree) {
  for (uint32_t i = 0; i < 10; i++) ASSERT_OK(map(i * 2, 1, 100 + i * 2));
  ASSERT_EQ(m_->depth(), 1);
  ASSERT_OK(map(2047, 1, 300));  // last block depth 1 covers (16 * 128)
  EXPECT_EQ(m_->depth(), 1);
  ASSERT_OK(map(2048, 1, 400));
  EXPECT_EQ(m_->depth(), 2);
  expect_round_trip();
  ASSERT_OK(map(3'000'000, 4, 500));  // beyond 4 GiB of file offset
  EXPECT_EQ(m_->depth(), 3);
  // Leaves 0, 15, 16, 23437; index (2,0), (2,91); index (3,0).
  EXPECT_EQ(m_->node_blocks().size(), 7u);
  expect_round_trip();
  ASSERT_OK(map(4'000'000'000u, 8, 600));
  EXPECT_EQ(m_->depth(), 4);
  expect_round_trip();
  EXPECT_EQ(phys_of(3'000'003), 503u);
  EXPECT_EQ(phys_of(4'000'000'007u), 607u);
  EXPECT_EQ(m_->find(2048)->physical, 400u);
  EXPECT_EQ(m_->find(18)->physical, 118u);
  EXPECT_FALSE(m_->find(3'000'004));
}

TEST_F(ExtentMapTest, SparseFileGrowsStraightToTheNeededDepth) {
  ASSERT_OK(map(0, 1, 100));
  for (uint32_t i = 0; i < 9; i++) ASSERT_OK(map((1u << 20) + i * 3, 1, 200 + i));
  EXPECT_EQ(m_->depth(), 3);
  expect_round_trip();
}

TEST_F(ExtentMapTest, TopOfTheLogicalRangeWorksWithoutOverflow) {
  for (uint32_t i = 0; i < 10; i++) ASSERT_OK(map(uint32_t(kTop - 200) + i * 2, 1, 100 + i));
  ASSERT_OK(map(uint32_t(kTop - 10), 10, 1000));
  EXPECT_EQ(phys_of(uint32_t(kTop - 1)), 1009u);
  EXPECT_EQ(map(uint32_t(kTop - 10), 11, 2000).error(), EINVAL);
  expect_round_trip();
  std::vector<PhysRange> freed;
  ASSERT_OK(unmap(uint32_t(kTop - 5), UINT64_MAX, &freed));  // clamped at 2^32
  ASSERT_EQ(freed.size(), 1u);
  EXPECT_EQ(freed[0].start, 1005u);
  EXPECT_EQ(freed[0].count, 5u);
  expect_round_trip();
}

// ---- Replacing and removing ----

TEST_F(ExtentMapTest, OverwriteInTheMiddleSplitsAndReportsExactlyTheOldBlocks) {
  ASSERT_OK(map(0, 100, 1000));
  std::vector<PhysRange> replaced;
  ASSERT_OK(map(40, 10, 5000, false, &replaced));
  ASSERT_EQ(replaced.size(), 1u);
  EXPECT_EQ(replaced[0].start, 1040u);
  EXPECT_EQ(replaced[0].count, 10u);
  EXPECT_EQ(all(*m_), (std::vector<Extent>{{0, 40, 1000, false},
                                           {40, 10, 5000, false},
                                           {50, 50, 1050, false}}));
  expect_round_trip();
}

TEST_F(ExtentMapTest, OverwriteAcrossSeveralExtentsReportsEachPiece) {
  ASSERT_OK(map(0, 10, 1000));
  ASSERT_OK(map(10, 10, 2000));
  ASSERT_OK(map(30, 10, 3000, true));
  std::vector<PhysRange> replaced;
  ASSERT_OK(map(5, 30, 7000, false, &replaced));
  ASSERT_EQ(replaced.size(), 3u);
  EXPECT_EQ(replaced[0].start, 1005u);
  EXPECT_EQ(replaced[0].count, 5u);
  EXPECT_EQ(replaced[1].start, 2000u);
  EXPECT_EQ(replaced[1].count, 10u);
  EXPECT_EQ(replaced[2].start, 3000u);
  EXPECT_EQ(replaced[2].count, 5u);
  EXPECT_EQ(all(*m_), (std::vector<Extent>{{0, 5, 1000, false},
                                           {5, 30, 7000, false},
                                           {35, 5, 3005, true}}));
}

TEST_F(ExtentMapTest, UnmapPunchesAHoleAndReportsTheFreedBlocks) {
  for (uint32_t i = 0; i < 12; i++) ASSERT_OK(map(i * 100, 100, 1000 + i * 200));
  std::vector<PhysRange> freed;
  ASSERT_OK(unmap(150, 100, &freed));
  ASSERT_EQ(freed.size(), 2u);
  EXPECT_EQ(freed[0].start, 1250u);
  EXPECT_EQ(freed[0].count, 50u);
  EXPECT_EQ(freed[1].start, 1400u);
  EXPECT_EQ(freed[1].count, 50u);
  EXPECT_FALSE(m_->find(150));
  EXPECT_FALSE(m_->find(249));
  EXPECT_EQ(phys_of(149), 1249u);
  EXPECT_EQ(phys_of(250), 1450u);
  EXPECT_EQ(m_->mapped_blocks(), 1100u);
  expect_round_trip();
  freed.clear();
  ASSERT_OK(unmap(0, uint64_t(1) << 40, &freed));  // truncate to zero
  EXPECT_EQ(freed.size(), 12u);
  EXPECT_EQ(m_->mapped_blocks(), 0u);
  EXPECT_TRUE(m_->node_blocks().empty());
  expect_round_trip();
}

TEST_F(ExtentMapTest, EmptiedLeafAndIndexNodesAreFreedAndUnlinked) {
  for (uint32_t i = 0; i < 9; i++) ASSERT_OK(map(i * 2, 1, 100 + i * 2));
  ASSERT_OK(map(5000, 10, 300));  // depth 2: leaf 39 under index (2,0)
  ASSERT_OK(map(600'000, 10, 400));  // depth 3: leaf 4687 under (2,18)
  ASSERT_EQ(m_->depth(), 3);
  size_t nodes = m_->node_blocks().size();  // leaves 0,39,4687; (2,0),(2,18); (3,0)
  EXPECT_EQ(nodes, 6u);
  expect_round_trip();
  ASSERT_OK(unmap(600'000, 10));
  EXPECT_EQ(m_->node_blocks().size(), nodes - 2) << "leaf and its index parent";
  EXPECT_EQ(frees_, 2);
  expect_round_trip();
  ASSERT_OK(unmap(0, 6000));
  EXPECT_TRUE(m_->node_blocks().empty());
  EXPECT_EQ(root_pointer(0), 0u);
  EXPECT_EQ(m_->depth(), 3) << "the depth is never reduced";
  expect_round_trip();
}

// ---- Leaves ----

TEST_F(ExtentMapTest, ExtentsAreSplitAtLeafBoundariesOnDiskButNotInMemory) {
  for (uint32_t i = 0; i < 10; i++) ASSERT_OK(map(1000 + i * 2, 1, 5000 + i * 2));
  ASSERT_OK(map(100, 200, 3000));  // leaves 0, 1, 2
  EXPECT_EQ(m_->find(250)->logical, 100u);
  EXPECT_EQ(m_->find(250)->len, 200u);
  expect_round_trip();
  // The leaf for [128, 256) holds one entry clipped to its span.
  std::vector<uint64_t> leaves = m_->node_blocks();
  bool found = false;
  for (uint64_t b : leaves) {
    auto buf = cache_->read(b, kMagicExtentLeaf);
    ASSERT_TRUE(buf.ok());
    const uint8_t* p = (*buf)->payload();
    if (get_le64(p) != 128) continue;
    found = true;
    EXPECT_EQ(get_le16(p + 8), 1u);
    EXPECT_EQ(get_le32(p + 16), 128u);
    EXPECT_EQ(get_le32(p + 20), 128u);
    EXPECT_EQ(get_le64(p + 24), 3028u);
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(m_->extents().size(), 11u) << "merged again across leaves on load";
}

TEST_F(ExtentMapTest, FullyFragmentedLeafRoundTrips) {
  for (uint32_t i = 0; i < kLeafSpan; i++) ASSERT_OK(map(i, 1, 4000 + 2 * i, i % 3 == 0));
  EXPECT_EQ(m_->extents().size(), kLeafSpan);
  ASSERT_EQ(m_->node_blocks().size(), 1u);
  expect_round_trip();
  auto buf = cache_->read(m_->node_blocks()[0], kMagicExtentLeaf);
  ASSERT_TRUE(buf.ok());
  EXPECT_EQ(get_le16((*buf)->payload() + 8), kLeafSpan);
  EXPECT_EQ(phys_of(127), 4254u);
  EXPECT_TRUE(m_->find(126)->unwritten);
}

// The redirect-on-write pattern: single blocks of a laid-out file remapped
// at random, so leaves fill with one-block extents and a rewrite changes
// one entry of a full leaf (sync edits the leaf's entries in place rather
// than rebuilding them). Every reload must read back exactly the map.
TEST_F(ExtentMapTest, RandomSingleBlockRewritesOfAFragmentedFileRoundTrip) {
  constexpr uint32_t kBlocks = 4 * kLeafSpan;
  ASSERT_OK(map(0, kBlocks, 100));
  std::mt19937 rng(7);
  uint64_t next_phys = 1000;
  for (int op = 0; op < 3000; op++) {
    uint32_t l = rng() % kBlocks;
    if (rng() % 8 == 0) {
      ASSERT_OK(unmap(l, 1 + rng() % 3));
    } else if (rng() % 8 == 0 && l > 0 && phys_of(l - 1)) {
      ASSERT_OK(map(l, 1, phys_of(l - 1) + 1));  // may merge with its left neighbour
    } else {
      ASSERT_OK(map(l, 1, next_phys++));
      if (next_phys >= kFirstNodeBlock) next_phys = 1000;
    }
    if (op % 500 == 499) {
      ASSERT_NO_FATAL_FAILURE(expect_round_trip()) << "after op " << op;
    }
  }
  EXPECT_GT(m_->extents().size(), kLeafSpan) << "the leaves never fragmented";
}

TEST_F(ExtentMapTest, ContiguousExtentsOfTheSameStateMerge) {
  ASSERT_OK(map(0, 10, 100));
  ASSERT_OK(map(10, 10, 110));
  EXPECT_EQ(m_->extents().size(), 1u);
  ASSERT_OK(map(20, 10, 200));  // not physically contiguous
  ASSERT_OK(map(30, 10, 210, true));  // contiguous but unwritten
  EXPECT_EQ(m_->extents().size(), 3u);
  ASSERT_OK(mark_written(30, 10));
  EXPECT_EQ(all(*m_), (std::vector<Extent>{{0, 20, 100, false}, {20, 20, 200, false}}));
  // Filling a gap with the matching blocks joins both sides.
  ASSERT_OK(map(50, 10, 230));
  ASSERT_OK(map(40, 10, 500));
  EXPECT_EQ(m_->extents().size(), 4u);
  ASSERT_OK(map(40, 10, 220));
  EXPECT_EQ(all(*m_), (std::vector<Extent>{{0, 20, 100, false}, {20, 40, 200, false}}));
  expect_round_trip();
}

// ---- Queries ----

TEST_F(ExtentMapTest, FindAndNextGiveSeekDataAndSeekHoleAnswers) {
  ASSERT_OK(map(10, 10, 100));
  ASSERT_OK(map(50, 5, 200, true));
  EXPECT_FALSE(m_->find(9));
  EXPECT_EQ(m_->find(10)->physical, 100u);
  EXPECT_EQ(m_->find(19)->logical, 10u);
  EXPECT_FALSE(m_->find(20));
  // SEEK_DATA from a hole lands on the next extent; from data, stays.
  EXPECT_EQ(m_->next(0)->logical, 10u);
  EXPECT_EQ(m_->next(15)->logical, 10u);
  EXPECT_EQ(m_->next(20)->logical, 50u);
  EXPECT_TRUE(m_->next(52)->unwritten);
  EXPECT_FALSE(m_->next(55));
  // SEEK_HOLE from data: the end of the extent containing it.
  auto e = m_->next(12);
  EXPECT_EQ(e->logical + e->len, 20u);
}

TEST_F(ExtentMapTest, MarkWrittenSplitsAnUnwrittenExtentAndSurvivesReload) {
  ASSERT_OK(map(0, 100, 1000, true));
  ASSERT_OK(mark_written(10, 10));
  EXPECT_EQ(all(*m_), (std::vector<Extent>{{0, 10, 1000, true},
                                           {10, 10, 1010, false},
                                           {20, 80, 1020, true}}));
  expect_round_trip();
  ASSERT_OK(mark_written(0, 100));
  EXPECT_EQ(all(*m_), (std::vector<Extent>{{0, 100, 1000, false}}));
  expect_round_trip();
}

// ---- Failure ----

TEST_F(ExtentMapTest, NodeAllocationFailureLeavesTheMapUnchanged) {
  for (uint32_t i = 0; i < 9; i++) ASSERT_OK(map(i * 2, 1, 100 + i * 2));
  fail_alloc_ = true;
  std::vector<PhysRange> replaced;
  EXPECT_EQ(map(1, 3, 900, false, &replaced).error(), 0) << "fits inline: no node needed";
  auto before = all(*m_);
  replaced.clear();
  // A tenth extent needs a leaf: ENOSPC, and nothing changes.
  EXPECT_EQ(map(31, 4, 900, false, &replaced).error(), ENOSPC);
  EXPECT_EQ(all(*m_), before);
  EXPECT_TRUE(replaced.empty());
  EXPECT_EQ(m_->depth(), 0);
  fail_alloc_ = false;
  ASSERT_OK(map(31, 4, 900, false, &replaced));
  EXPECT_TRUE(replaced.empty());
  EXPECT_EQ(m_->depth(), 1);
  expect_round_trip();
}

// A punch in the middle of an extent leaves a head before the range and a
// tail after it; when the split needs a leaf that cannot be had, both
// pieces must go and the whole extent come back (the fuzzer found the tail
// left behind, overlapping the restored extent).
TEST_F(ExtentMapTest, FailedPunchInsideAnExtentLeavesTheMapUnchanged) {
  for (uint32_t i = 0; i < 8; i++) ASSERT_OK(map(i * 2, 1, 100 + i * 2));
  ASSERT_OK(map(1000, 2000, 3000));
  auto before = all(*m_);
  ASSERT_EQ(before.size(), 9u);
  fail_alloc_ = true;
  std::vector<PhysRange> freed;
  EXPECT_EQ(unmap(1500, 10, &freed).error(), ENOSPC);
  EXPECT_EQ(all(*m_), before);
  EXPECT_TRUE(freed.empty());
  // Mapping over the middle splits the same way.
  EXPECT_EQ(map(1500, 10, 5000, false, &freed).error(), ENOSPC);
  EXPECT_EQ(all(*m_), before);
  EXPECT_TRUE(freed.empty());
  fail_alloc_ = false;
  ASSERT_OK(unmap(1500, 10, &freed));
  ASSERT_EQ(freed.size(), 1u);
  EXPECT_EQ(freed[0].start, 3500u);
  EXPECT_EQ(freed[0].count, 10u);
  expect_round_trip();
}

TEST_F(ExtentMapTest, InvalidArgumentsAreRejected) {
  EXPECT_EQ(map(5, 1, 0).error(), EINVAL);
  EXPECT_EQ(map(5, 2, UINT64_MAX).error(), EINVAL);
  ASSERT_OK(map(5, 0, 100));
  EXPECT_TRUE(m_->extents().empty());
}

// ---- Against a reference model ----

constexpr uint32_t kWindow = 5000;

// One slot per logical block of a window: the physical block (0 = hole) and
// whether it is unwritten. Windows at different bases exercise every depth,
// including the very top of the u32 logical range.
class ExtentMapModelTest : public ExtentMapTest, public ::testing::WithParamInterface<uint64_t> {
 protected:
  std::vector<uint64_t> phys_ = std::vector<uint64_t>(kWindow, 0);
  std::vector<bool> unwritten_ = std::vector<bool>(kWindow, false);

  // Old physical blocks of the window slots [a, b), as single blocks.
  std::vector<uint64_t> model_blocks(uint32_t a, uint32_t b) {
    std::vector<uint64_t> v;
    for (uint32_t i = a; i < b; i++)
      if (phys_[i]) v.push_back(phys_[i]);
    std::sort(v.begin(), v.end());
    return v;
  }
  static std::vector<uint64_t> expand(const std::vector<PhysRange>& r) {
    std::vector<uint64_t> v;
    for (const PhysRange& x : r)
      for (uint64_t i = 0; i < x.count; i++) v.push_back(x.start + i);
    std::sort(v.begin(), v.end());
    return v;
  }
  void expect_matches_model(uint64_t base) {
    std::vector<uint64_t> got(kWindow, 0);
    std::vector<bool> got_unwritten(kWindow, false);
    const Extent* prev = nullptr;
    for (const auto& [l, e] : m_->extents()) {
      ASSERT_GE(e.logical, base);
      ASSERT_LE(e.logical + uint64_t(e.len), base + kWindow);
      for (uint32_t i = 0; i < e.len; i++) {
        got[e.logical - base + i] = e.physical + i;
        got_unwritten[e.logical - base + i] = e.unwritten;
      }
      if (prev) {
        bool mergeable = prev->logical + uint64_t(prev->len) == e.logical &&
                         prev->physical + prev->len == e.physical &&
                         prev->unwritten == e.unwritten;
        EXPECT_FALSE(mergeable) << "unmerged neighbours at " << e.logical;
      }
      prev = &e;
    }
    ASSERT_EQ(got, phys_);
    for (uint32_t i = 0; i < kWindow; i++) {
      if (phys_[i]) {
        ASSERT_EQ(got_unwritten[i], unwritten_[i]) << "block " << base + i;
      }
    }
    EXPECT_EQ(m_->mapped_blocks(), uint64_t(kWindow - std::count(phys_.begin(), phys_.end(), 0)));
  }
};

TEST_P(ExtentMapModelTest, RandomOperationsMatchTheModelAcrossReloads) {
  const uint64_t base = GetParam();
  std::mt19937 rng(20240611);
  auto pick = [&](uint32_t n) { return uint32_t(rng() % n); };
  for (int op = 0; op < 400; op++) {
    uint32_t a = pick(kWindow);
    uint32_t len = 1 + pick(std::min<uint32_t>(kWindow - a, pick(4) == 0 ? 600 : 40));
    uint32_t kind = pick(10);
    std::vector<PhysRange> out;
    if (kind < 6) {
      // Often continue the block before, so merging gets exercised.
      uint64_t p = (a > 0 && phys_[a - 1] && pick(2)) ? phys_[a - 1] + 1 : 1000 + pick(4000);
      bool unw = pick(5) == 0;
      std::vector<uint64_t> old = model_blocks(a, a + len);
      ASSERT_OK(map(uint32_t(base + a), len, p, unw, &out));
      EXPECT_EQ(expand(out), old) << "op " << op;
      for (uint32_t i = 0; i < len; i++) phys_[a + i] = p + i, unwritten_[a + i] = unw;
    } else if (kind < 8) {
      std::vector<uint64_t> old = model_blocks(a, a + len);
      ASSERT_OK(unmap(uint32_t(base + a), len, &out));
      EXPECT_EQ(expand(out), old) << "op " << op;
      for (uint32_t i = 0; i < len; i++) phys_[a + i] = 0, unwritten_[a + i] = false;
    } else {
      ASSERT_OK(mark_written(uint32_t(base + a), len));
      for (uint32_t i = 0; i < len; i++) unwritten_[a + i] = false;
    }
    ASSERT_NO_FATAL_FAILURE(expect_matches_model(base)) << "after op " << op;
    uint32_t probe = pick(kWindow);
    auto f = m_->find(uint32_t(base + probe));
    EXPECT_EQ(f ? f->physical + (base + probe - f->logical) : 0, phys_[probe]);
    if (op % 40 == 39) {
      ASSERT_NO_FATAL_FAILURE(expect_round_trip());
      ASSERT_NO_FATAL_FAILURE(expect_matches_model(base));
    }
  }
  ASSERT_OK(unmap(uint32_t(base), kWindow));
  EXPECT_TRUE(m_->node_blocks().empty());
  expect_round_trip();
}

INSTANTIATE_TEST_SUITE_P(Windows, ExtentMapModelTest,
                         ::testing::Values(uint64_t(0), uint64_t(3'000'000),
                                           kTop - kWindow));

// ---- Corruption on load ----

class ExtentMapCorruptionTest : public ExtentMapTest {
 protected:
  void SetUp() override {
    for (uint32_t i = 0; i < 10; i++) ASSERT_OK(map(i * 300, 3, 100 + i * 10));
    ASSERT_OK(map(10, 2, 500));  // leaf 0 holds [0,3) and [10,12)
    ASSERT_OK(map(3000, 1, 999));  // depth 2
    ASSERT_EQ(m_->depth(), 2);
    expect_round_trip();
    leaf_ = m_->node_blocks()[0];
    for (uint64_t b : m_->node_blocks()) {
      auto r = cache_->read(b, 0);
      ASSERT_TRUE(r.ok());
      if (decode_meta_header((*r)->data()).magic == kMagicExtentLeaf &&
          get_le64((*r)->payload()) == 0)
        leaf_ = b;
    }
  }
  int reload_error() {
    auto r = reload_from_disk();
    return r.ok() ? 0 : r.error();
  }
  uint64_t leaf_ = 0;  // the leaf for logical [0, 128)
};

TEST_F(ExtentMapCorruptionTest, FlippedByteInALeafIsDetected) {
  size_t off = kMetaHeaderSize + kNodeEntriesOffset + 8;  // physical of entry 0
  dev_.poke(leaf_, off, device_byte(leaf_, off) ^ 0x40);
  EXPECT_EQ(reload_error(), EUCLEAN);
}

TEST_F(ExtentMapCorruptionTest, RootPointerOutsideTheDeviceIsRejected) {
  put_le64(inode_.root.data(), kDeviceBlocks + 7);
  EXPECT_EQ(reload_error(), EUCLEAN);
}

TEST_F(ExtentMapCorruptionTest, RootPointerToALeafWhereAnIndexBelongsIsRejected) {
  put_le64(inode_.root.data(), leaf_);
  EXPECT_EQ(reload_error(), EUCLEAN);
}

TEST_F(ExtentMapCorruptionTest, NodeReferencedTwiceIsRejected) {
  put_le64(inode_.root.data() + 8, root_pointer(0));
  EXPECT_EQ(reload_error(), EUCLEAN);
}

TEST_F(ExtentMapCorruptionTest, NodeOwnedByAnotherInodeIsRejected) {
  auto r = reload_from_disk(kIno + 1);
  EXPECT_EQ(r.error(), EUCLEAN);
}

TEST_F(ExtentMapCorruptionTest, ValidlySealedLeafWithOverlappingExtentsIsRejected) {
  // Entry 1 ([10,12)) now starts inside entry 0 ([0,3)).
  rewrite_sealed(leaf_, [](uint8_t* b) {
    put_le32(b + kMetaHeaderSize + kNodeEntriesOffset + kExtentEntrySize, 1);
  });
  EXPECT_EQ(reload_error(), EUCLEAN);
}

TEST_F(ExtentMapCorruptionTest, ValidlySealedLeafWithOutOfSpanExtentIsRejected) {
  rewrite_sealed(leaf_, [](uint8_t* b) {
    put_le32(b + kMetaHeaderSize + kNodeEntriesOffset + 4, 200);  // len 200 > span
  });
  EXPECT_EQ(reload_error(), EUCLEAN);
}

TEST_F(ExtentMapCorruptionTest, ValidlySealedLeafWithWrongFirstLogicalIsRejected) {
  rewrite_sealed(leaf_, [](uint8_t* b) { put_le64(b + kMetaHeaderSize, 128); });
  EXPECT_EQ(reload_error(), EUCLEAN);
}

TEST_F(ExtentMapCorruptionTest, ValidlySealedLeafWithExcessiveCountIsRejected) {
  rewrite_sealed(leaf_, [](uint8_t* b) { put_le16(b + kMetaHeaderSize + 8, 200); });
  EXPECT_EQ(reload_error(), EUCLEAN);
}

TEST_F(ExtentMapCorruptionTest, ExtentPointingPastTheDeviceIsRejected) {
  rewrite_sealed(leaf_, [](uint8_t* b) {
    put_le64(b + kMetaHeaderSize + kNodeEntriesOffset + 8, kDeviceBlocks - 1);
  });
  EXPECT_EQ(reload_error(), EUCLEAN);
}

TEST_F(ExtentMapCorruptionTest, BadInlineRootIsRejected) {
  DiskInode d;
  d.inline_count = kInlineExtents + 1;
  EXPECT_EQ(ExtentMap::load(*cache_, kIno, d, kDeviceBlocks).error(), EUCLEAN);
  d.map_depth = kMaxMapDepth + 1;
  d.inline_count = 0;
  EXPECT_EQ(ExtentMap::load(*cache_, kIno, d, kDeviceBlocks).error(), EUCLEAN);
  // Two inline extents out of order.
  d = DiskInode{};
  d.inline_count = 2;
  uint8_t* p = d.root.data();
  put_le32(p, 10), put_le32(p + 4, 5), put_le64(p + 8, 100);
  put_le32(p + 16, 0), put_le32(p + 20, 5), put_le64(p + 24, 200);
  EXPECT_EQ(ExtentMap::load(*cache_, kIno, d, kDeviceBlocks).error(), EUCLEAN);
  put_le32(p + 16, 15);
  EXPECT_TRUE(ExtentMap::load(*cache_, kIno, d, kDeviceBlocks).ok());
}

}  // namespace
}  // namespace stablefs
