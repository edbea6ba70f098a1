// PageCache: the kernel's page states and the stable-page protocol.
//
// Threads are ordered with promises and with the cache's own "asleep right
// now" gauges: a test waits until a thread is observably asleep in a wait,
// then checks it has not passed that wait. The deadline in eventually()
// only turns a hang into a failure; no outcome depends on timing.
#include "core/page_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "core/base/checksum.h"

namespace stablefs {
namespace {

std::unique_ptr<PageCache> make_cache(size_t pages) {
  auto r = PageCache::create(pages * kPageSize);
  EXPECT_TRUE(r.ok());
  return std::move(r).value();
}

template <class Pred>
bool eventually(Pred pred) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// A page written by a writer: Uptodate, Dirty, unlocked; the ref is returned.
PageRef dirty_page(PageCache& c, uint64_t ino, uint64_t index, uint8_t fill = 0) {
  auto r = c.grab_cache_page(ino, index);
  EXPECT_TRUE(r.ok());
  PageRef p = std::move(r).value();
  std::memset(p->data(), fill, kPageSize);
  c.set_page_uptodate(p);
  EXPECT_TRUE(c.set_page_dirty(p).ok());
  c.unlock_page(p);
  return p;
}

// The writeback half of the protocol, up to submission.
void start_writeback(PageCache& c, const PageRef& p) {
  c.lock_page(p);
  ASSERT_TRUE(c.test_clear_page_dirty(p));
  ASSERT_TRUE(c.set_page_writeback(p).ok());
  c.unlock_page(p);
}

std::vector<uint64_t> indexes(std::span<PageRef> refs) {
  std::vector<uint64_t> v;
  for (auto& r : refs) v.push_back(r->index());
  return v;
}

TEST(PageCache, WriterBlocksWhilePageUnderWriteback) {
  auto c = make_cache(16);
  PageRef io = dirty_page(*c, 1, 0, 'a');
  start_writeback(*c, io);

  std::atomic<bool> writer_done{false};
  std::thread writer([&] {
    auto r = c->grab_cache_page(1, 0);
    ASSERT_TRUE(r.ok());
    PageRef p = std::move(r).value();
    EXPECT_TRUE(c->wait_on_page_writeback(p).ok());
    EXPECT_FALSE(p->writeback());
    std::memset(p->data(), 'b', kPageSize);
    EXPECT_TRUE(c->set_page_dirty(p).ok());
    c->unlock_page(p);
    writer_done = true;
  });

  ASSERT_TRUE(eventually([&] { return c->stats().writeback_waiters_now == 1; }));
  EXPECT_FALSE(writer_done);
  EXPECT_EQ(io->data()[kPageSize - 1], 'a');  // the bytes under I/O are intact
  ASSERT_TRUE(c->end_page_writeback(io).ok());
  writer.join();

  EXPECT_TRUE(writer_done);
  EXPECT_EQ(io->data()[0], 'b');
  PageCacheStats st = c->stats();
  EXPECT_EQ(st.writeback_waits, 1u);
  EXPECT_EQ(st.writeback_waiters_now, 0u);
  EXPECT_GT(st.writeback_wait_ns_total, 0u);
  EXPECT_EQ(st.writeback_wait_ns_max, st.writeback_wait_ns_total);
  EXPECT_EQ(st.protocol_errors, 0u);
}

TEST(PageCache, WaitWithoutWritebackIsNotCountedAsBlocking) {
  auto c = make_cache(4);
  auto p = std::move(c->grab_cache_page(1, 0)).value();
  EXPECT_TRUE(c->wait_on_page_writeback(p).ok());
  c->unlock_page(p);
  EXPECT_EQ(c->stats().writeback_waits, 0u);
}

TEST(PageCache, LockIsExclusive) {
  auto c = make_cache(4);
  PageRef held = std::move(c->grab_cache_page(1, 0)).value();
  EXPECT_FALSE(c->trylock_page(held));

  std::atomic<bool> acquired{false};
  std::thread other([&] {
    PageRef p = c->find_get_page(1, 0);
    ASSERT_TRUE(p);
    c->lock_page(p);
    acquired = true;
    c->unlock_page(p);
  });
  ASSERT_TRUE(eventually([&] { return c->stats().lock_waiters_now == 1; }));
  EXPECT_FALSE(acquired);
  c->unlock_page(held);
  other.join();

  EXPECT_TRUE(acquired);
  EXPECT_EQ(c->stats().lock_waits, 1u);
  EXPECT_TRUE(c->trylock_page(held));
  c->unlock_page(held);
  EXPECT_FALSE(held->locked());
}

TEST(PageCache, WritebackSetOnlyWhileLocked) {
  auto c = make_cache(4);
  PageRef p = std::move(c->grab_cache_page(1, 0)).value();
  c->unlock_page(p);

  EXPECT_EQ(c->set_page_writeback(p).error(), ENOLCK);
  EXPECT_FALSE(p->writeback());
  EXPECT_EQ(c->set_page_dirty(p).error(), ENOLCK);
  EXPECT_EQ(c->wait_on_page_writeback(p).error(), ENOLCK);

  c->lock_page(p);
  ASSERT_TRUE(c->set_page_dirty(p).ok());
  EXPECT_EQ(c->set_page_writeback(p).error(), EINVAL);  // Dirty not cleared first
  EXPECT_FALSE(p->writeback());
  ASSERT_TRUE(c->test_clear_page_dirty(p));
  ASSERT_TRUE(c->set_page_writeback(p).ok());
  EXPECT_EQ(c->set_page_writeback(p).error(), EBUSY);
  c->unlock_page(p);

  EXPECT_EQ(c->writeback_count(), 1u);
  EXPECT_TRUE(c->end_page_writeback(p).ok());
  EXPECT_EQ(c->end_page_writeback(p).error(), EINVAL);
  EXPECT_EQ(c->writeback_count(), 0u);
  EXPECT_EQ(c->stats().protocol_errors, 6u);
}

TEST(PageCache, TestClearDirtyNeedsThePageLock) {
  auto c = make_cache(4);
  PageRef p = dirty_page(*c, 1, 0);
  EXPECT_FALSE(c->test_clear_page_dirty(p));
  EXPECT_TRUE(p->dirty());
  EXPECT_EQ(c->stats().protocol_errors, 1u);
}

TEST(PageCache, NewPageIsLockedNotUptodate) {
  auto c = make_cache(4);
  PageRef p = std::move(c->grab_cache_page(9, 3)).value();
  EXPECT_TRUE(p->locked());
  EXPECT_FALSE(p->uptodate());
  EXPECT_FALSE(p->dirty());
  EXPECT_FALSE(p->writeback());
  EXPECT_TRUE(p->attached());
  EXPECT_EQ(p->ino(), 9u);
  EXPECT_EQ(p->index(), 3u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p->data()) % kPageSize, 0u);  // O_DIRECT-able
  c->set_page_uptodate(p);
  c->unlock_page(p);

  PageRef again = std::move(c->grab_cache_page(9, 3)).value();
  EXPECT_EQ(again.get(), p.get());
  EXPECT_TRUE(again->locked());
  EXPECT_TRUE(again->uptodate());
  c->unlock_page(again);
  EXPECT_FALSE(c->find_get_page(9, 4));
}

TEST(PageCache, DirtyPagesGatheredInIndexOrder) {
  auto c = make_cache(16);
  for (uint64_t i : {5, 1, 9, 3}) dirty_page(*c, 7, i);
  {
    PageRef clean = std::move(c->grab_cache_page(7, 2)).value();
    c->unlock_page(clean);
  }
  dirty_page(*c, 8, 0);
  EXPECT_EQ(c->dirty_count(), 5u);
  EXPECT_EQ(c->dirty_inodes(), (std::vector<uint64_t>{7, 8}));

  PageRef out[8];
  size_t n = c->find_dirty_pages(7, 0, UINT64_MAX, out);
  EXPECT_EQ(indexes({out, n}), (std::vector<uint64_t>{1, 3, 5, 9}));
  n = c->find_dirty_pages(7, 2, 6, out);
  EXPECT_EQ(indexes({out, n}), (std::vector<uint64_t>{3, 5}));
  n = c->find_dirty_pages(7, 0, UINT64_MAX, std::span(out, 2));
  EXPECT_EQ(indexes({out, n}), (std::vector<uint64_t>{1, 3}));

  c->lock_page(out[1]);  // index 3
  EXPECT_TRUE(c->test_clear_page_dirty(out[1]));
  c->unlock_page(out[1]);
  n = c->find_dirty_pages(7, 0, UINT64_MAX, out);
  EXPECT_EQ(indexes({out, n}), (std::vector<uint64_t>{1, 5, 9}));
  EXPECT_EQ(c->dirty_count(), 4u);
}

TEST(PageCache, EvictsOnlyCleanUnlockedPages) {
  auto c = make_cache(4);
  dirty_page(*c, 1, 0);                                            // dirty
  PageRef locked = std::move(c->grab_cache_page(1, 1)).value();    // locked
  PageRef io = dirty_page(*c, 1, 2);                               // writeback
  start_writeback(*c, io);
  {
    PageRef clean = std::move(c->grab_cache_page(1, 3)).value();   // clean
    c->set_page_uptodate(clean);
    c->unlock_page(clean);
  }

  auto r = c->grab_cache_page(1, 4, PageCache::Alloc::kNoWait);
  ASSERT_TRUE(r.ok());
  PageRef p4 = std::move(r).value();
  EXPECT_FALSE(c->find_get_page(1, 3));
  EXPECT_TRUE(c->find_get_page(1, 0));
  EXPECT_TRUE(c->find_get_page(1, 1));
  EXPECT_TRUE(c->find_get_page(1, 2));
  EXPECT_EQ(c->stats().evictions, 1u);

  // Clean and unlocked but referenced: still not evictable.
  c->unlock_page(p4);
  EXPECT_EQ(c->grab_cache_page(1, 5, PageCache::Alloc::kNoWait).error(), EAGAIN);
  p4.reset();
  ASSERT_TRUE(c->grab_cache_page(1, 5, PageCache::Alloc::kNoWait).ok());
  EXPECT_FALSE(c->find_get_page(1, 4));

  // Writeback ends and the I/O lets go: now that page may go.
  ASSERT_TRUE(c->end_page_writeback(io).ok());
  io.reset();
  ASSERT_TRUE(c->grab_cache_page(1, 6, PageCache::Alloc::kNoWait).ok());
  EXPECT_FALSE(c->find_get_page(1, 2));
  EXPECT_TRUE(c->find_get_page(1, 0));
  EXPECT_EQ(c->stats().cached_pages, 4u);
}

TEST(PageCache, CapacityIsBounded) {
  EXPECT_EQ(PageCache::create(0).error(), EINVAL);
  EXPECT_EQ(PageCache::create(kPageSize - 1).error(), EINVAL);
  auto c = make_cache(8);
  EXPECT_EQ(c->capacity_pages(), 8u);
  for (uint64_t i = 0; i < 100; i++) {
    PageRef p = std::move(c->grab_cache_page(1, i)).value();
    c->set_page_uptodate(p);
    c->unlock_page(p);
    ASSERT_LE(c->stats().cached_pages, 8u);
  }
  EXPECT_EQ(c->stats().cached_pages, 8u);
  EXPECT_EQ(c->stats().evictions, 92u);
  EXPECT_TRUE(c->find_get_page(1, 99));
}

TEST(PageCache, PressureKicksWritebackAndWaitsForAFrame) {
  auto c = make_cache(2);
  dirty_page(*c, 1, 0);
  dirty_page(*c, 1, 1);
  std::promise<void> kicked;
  std::atomic<int> kicks{0};
  c->set_pressure_hook([&] {
    if (kicks.fetch_add(1) == 0) kicked.set_value();
  });
  EXPECT_EQ(c->grab_cache_page(1, 2, PageCache::Alloc::kNoWait).error(), EAGAIN);

  std::atomic<bool> got{false};
  std::thread grabber([&] {
    auto r = c->grab_cache_page(1, 2);
    ASSERT_TRUE(r.ok());
    got = true;
    c->unlock_page(*r);
  });
  kicked.get_future().wait();  // the grabber found nothing evictable
  EXPECT_FALSE(got);
  EXPECT_EQ(c->stats().pressure_waiters_now, 1u);

  // What the flusher does when kicked: write back page 0.
  {
    PageRef p = c->find_get_page(1, 0);
    start_writeback(*c, p);
    ASSERT_TRUE(c->end_page_writeback(p).ok());
  }
  grabber.join();
  EXPECT_TRUE(got);
  EXPECT_FALSE(c->find_get_page(1, 0));
  EXPECT_TRUE(c->find_get_page(1, 1));
  EXPECT_EQ(c->stats().pressure_waits, 1u);
  EXPECT_EQ(c->stats().pressure_waiters_now, 0u);
}

TEST(PageCache, TruncateWaitsForWriteback) {
  auto c = make_cache(16);
  {
    PageRef p0 = std::move(c->grab_cache_page(3, 0)).value();
    c->unlock_page(p0);
  }
  dirty_page(*c, 3, 1);
  PageRef io = dirty_page(*c, 3, 2);
  start_writeback(*c, io);
  dirty_page(*c, 3, 3);
  dirty_page(*c, 4, 3);  // another inode is untouched

  std::atomic<bool> done{false};
  std::thread truncater([&] {
    c->truncate_inode_pages(3, 1);
    done = true;
  });
  ASSERT_TRUE(eventually([&] { return c->stats().writeback_waiters_now == 1; }));
  EXPECT_FALSE(done);
  EXPECT_TRUE(io->attached());
  ASSERT_TRUE(c->end_page_writeback(io).ok());
  truncater.join();

  EXPECT_TRUE(done);
  EXPECT_FALSE(io->attached());
  EXPECT_TRUE(c->find_get_page(3, 0));
  for (uint64_t i = 1; i <= 3; i++) EXPECT_FALSE(c->find_get_page(3, i));
  EXPECT_TRUE(c->find_get_page(4, 3));
  EXPECT_EQ(c->dirty_count(), 1u);
  EXPECT_EQ(c->writeback_count(), 0u);
  EXPECT_EQ(c->dirty_inodes(), (std::vector<uint64_t>{4}));
  EXPECT_EQ(c->stats().cached_pages, 3u);  // 3:0, 4:3, and io's detached frame
  io.reset();
  EXPECT_EQ(c->stats().cached_pages, 2u);
}

TEST(PageCache, PunchHoleRemovesOnlyTheRange) {
  auto c = make_cache(16);
  for (uint64_t i = 0; i < 6; i++) dirty_page(*c, 5, i);
  c->truncate_inode_pages_range(5, 2, 3);
  for (uint64_t i = 0; i < 6; i++) EXPECT_EQ(bool(c->find_get_page(5, i)), i < 2 || i > 3) << i;
  EXPECT_EQ(c->dirty_count(), 4u);
}

TEST(PageCache, TruncatedDirtyPageIsSkippedByWriteback) {
  auto c = make_cache(8);
  dirty_page(*c, 2, 0);
  PageRef gathered[1];
  ASSERT_EQ(c->find_dirty_pages(2, 0, 0, gathered), 1u);  // flusher has it
  c->truncate_inode_pages(2, 0);
  c->lock_page(gathered[0]);
  EXPECT_FALSE(gathered[0]->attached());
  EXPECT_FALSE(c->test_clear_page_dirty(gathered[0]));
  c->unlock_page(gathered[0]);
  EXPECT_EQ(c->dirty_count(), 0u);
}

TEST(PageCache, ShadowPageReplacesPageUnderWriteback) {
  auto c = make_cache(4);
  PageRef io = dirty_page(*c, 1, 0, 'a');
  start_writeback(*c, io);

  PageRef old = std::move(c->grab_cache_page(1, 0)).value();
  auto r = c->shadow_page(old);
  ASSERT_TRUE(r.ok());
  PageRef fresh = std::move(r).value();
  EXPECT_NE(fresh.get(), old.get());
  EXPECT_TRUE(fresh->locked());
  EXPECT_TRUE(fresh->uptodate());
  EXPECT_EQ(fresh->data()[7], 'a');  // starts as a copy
  std::memset(fresh->data(), 'b', kPageSize);
  ASSERT_TRUE(c->set_page_dirty(fresh).ok());
  c->unlock_page(fresh);
  c->unlock_page(old);
  old.reset();

  EXPECT_EQ(io->data()[7], 'a');  // the I/O's bytes never changed
  EXPECT_FALSE(io->attached());
  EXPECT_EQ(c->find_get_page(1, 0).get(), fresh.get());
  EXPECT_EQ(c->dirty_count(), 1u);
  EXPECT_EQ(c->stats().cached_pages, 2u);
  EXPECT_EQ(c->stats().shadow_copies, 1u);

  ASSERT_TRUE(c->end_page_writeback(io).ok());
  io.reset();
  EXPECT_EQ(c->stats().cached_pages, 1u);  // the old frame went back to the pool
  EXPECT_EQ(c->shadow_page(fresh).error(), EINVAL);  // not locked, not under writeback
}

// Fills every frame of the cache with a dirty page of `ino` under writeback
// (nothing free, nothing evictable) and returns them.
std::vector<PageRef> fill_with_writeback(PageCache& c, uint64_t ino) {
  std::vector<PageRef> v;
  for (uint64_t i = 0; i < c.capacity_pages(); i++) {
    v.push_back(dirty_page(c, ino, i, uint8_t('a' + i)));
    start_writeback(c, v.back());
  }
  return v;
}

// Seed 003's mempool: with the cache full of pages under writeback, shadow
// copies come from the reserve; when it is empty the writer is told to
// wait; completions refill it.
TEST(PageCache, ShadowReserveServesAFullCacheAndRefillsOnCompletion) {
  auto c = std::move(PageCache::create(4 * kPageSize, {.reserve = 2, .max_in_flight = 8})).value();
  EXPECT_EQ(c->capacity_pages(), 4u);
  std::vector<PageRef> io = fill_with_writeback(*c, 1);
  EXPECT_EQ(c->stats().cached_pages, 4u);
  EXPECT_EQ(c->stats().shadow_reserve_free, 2u);
  // An ordinary allocation never touches the reserve.
  EXPECT_EQ(c->grab_cache_page(2, 0, PageCache::Alloc::kNoWait).error(), EAGAIN);

  std::vector<PageRef> copies;
  for (uint64_t i = 0; i < 2; i++) {
    PageRef p = std::move(c->grab_cache_page(1, i)).value();
    auto r = c->shadow_page(p);
    ASSERT_TRUE(r.ok()) << i;
    c->unlock_page(p);
    copies.push_back(std::move(r).value());
    c->unlock_page(copies.back());
  }
  EXPECT_EQ(c->stats().shadow_reserve_takes, 2u);
  EXPECT_EQ(c->stats().shadow_reserve_free, 0u);
  EXPECT_EQ(c->stats().shadow_in_flight, 2u);

  // Reserve empty, cache full: EAGAIN, and the page is untouched.
  PageRef third = std::move(c->grab_cache_page(1, 2)).value();
  EXPECT_EQ(c->shadow_page(third).error(), EAGAIN);
  EXPECT_TRUE(third->attached());
  EXPECT_EQ(third->data()[0], 'c');
  EXPECT_EQ(c->stats().shadow_exhausted, 1u);

  // The first shadowed write completes: its old frame refills the reserve,
  // and the next contended writer gets a copy again.
  ASSERT_TRUE(c->end_page_writeback(io[0]).ok());
  io[0].reset();
  EXPECT_EQ(c->stats().shadow_in_flight, 1u);
  EXPECT_EQ(c->stats().shadow_reserve_free, 1u);
  auto r = c->shadow_page(third);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value()->data()[0], 'c');
  c->unlock_page(third);
  c->unlock_page(r.value());
  third.reset();
  copies.push_back(std::move(r).value());

  for (size_t i = 1; i < io.size(); i++) ASSERT_TRUE(c->end_page_writeback(io[i]).ok());
  io.clear();
  EXPECT_EQ(c->stats().shadow_in_flight, 0u);
  EXPECT_EQ(c->stats().shadow_reserve_free, 2u);  // back to its target, no more
  EXPECT_EQ(c->stats().shadow_copies, 3u);
}

// The pool is bounded even when frames are plentiful: beyond max_in_flight
// shadowed frames the writer waits instead.
TEST(PageCache, ShadowCopiesInFlightAreBounded) {
  auto c = std::move(PageCache::create(64 * kPageSize, {.reserve = 1, .max_in_flight = 3})).value();
  std::vector<PageRef> io, copies;
  for (uint64_t i = 0; i < 5; i++) {
    io.push_back(dirty_page(*c, 1, i));
    start_writeback(*c, io.back());
  }
  int made = 0, refused = 0;
  for (uint64_t i = 0; i < 5; i++) {
    PageRef p = std::move(c->grab_cache_page(1, i)).value();
    auto r = c->shadow_page(p);
    if (r.ok()) {
      made++;
      c->unlock_page(r.value());
      copies.push_back(std::move(r).value());
    } else {
      EXPECT_EQ(r.error(), EAGAIN);
      refused++;
    }
    c->unlock_page(p);
  }
  EXPECT_EQ(made, 3);
  EXPECT_EQ(refused, 2);
  EXPECT_EQ(c->stats().shadow_reserve_takes, 0u);  // free frames were there
  EXPECT_EQ(c->stats().shadow_in_flight, 3u);
  for (auto& p : io) ASSERT_TRUE(c->end_page_writeback(p).ok());
  io.clear();
  EXPECT_EQ(c->stats().shadow_in_flight, 0u);
  EXPECT_EQ(c->stats().shadow_reserve_free, 1u);
}

TEST(PageCache, WritebackRangeWaitBlocksUntilCompletion) {
  auto c = make_cache(8);
  PageRef io = dirty_page(*c, 1, 4);
  start_writeback(*c, io);
  c->wait_on_writeback_range(1, 0, 3);  // outside the range: returns at once
  c->wait_on_writeback_range(2, 0, UINT64_MAX);

  std::atomic<bool> done{false};
  std::thread fsyncer([&] {
    c->wait_on_writeback_range(1, 0, UINT64_MAX);
    done = true;
  });
  ASSERT_TRUE(eventually([&] { return c->stats().range_waiters_now == 1; }));
  EXPECT_FALSE(done);
  ASSERT_TRUE(c->end_page_writeback(io).ok());
  fsyncer.join();
  EXPECT_TRUE(done);
}

// Writers and flushers race over a few pages under memory pressure. The I/O
// completion thread checks that every page's bytes at completion are the
// bytes checksummed at submission, and a checker never sees Dirty and
// Writeback together (writers wait before they modify).
TEST(PageCache, ManyThreadsStress) {
  constexpr int kWriters = 5, kFlushers = 2, kOps = 2000;
  constexpr uint64_t kIno = 1, kPages = 12;
  auto c = make_cache(8);

  std::mutex kick_mu;  // guards kick_gen, writers_left
  std::condition_variable kick_cv;
  uint64_t kick_gen = 0;
  int writers_left = kWriters;
  auto kick = [&] {
    { std::lock_guard g(kick_mu); kick_gen++; }
    kick_cv.notify_all();
  };
  c->set_pressure_hook(kick);

  struct Io { PageRef page; uint64_t sum; };
  std::mutex io_mu;  // guards ios, flushers_left
  std::condition_variable io_cv;
  std::deque<Io> ios;
  int flushers_left = kFlushers;

  std::vector<uint64_t> disk(kPages, 0), expected(kPages, 0);  // stamps
  std::atomic<int> torn{0}, dirty_and_writeback{0};
  std::atomic<bool> stop_checker{false};

  auto stamp_of = [](const uint8_t* d) { uint64_t s; std::memcpy(&s, d, 8); return s; };

  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; w++) {
    threads.emplace_back([&, w] {
      std::mt19937 rng(w);
      for (uint64_t seq = 1; seq <= kOps; seq++) {
        uint64_t idx = rng() % kPages;
        PageRef p = std::move(c->grab_cache_page(kIno, idx)).value();
        EXPECT_TRUE(c->wait_on_page_writeback(p).ok());
        uint64_t stamp = (uint64_t(w + 1) << 32) | seq;
        for (size_t off = 0; off < kPageSize; off += 8) std::memcpy(p->data() + off, &stamp, 8);
        expected[idx] = stamp;  // under the page lock
        c->set_page_uptodate(p);
        EXPECT_TRUE(c->set_page_dirty(p).ok());
        c->unlock_page(p);
        p.reset();
        if (seq % 8 == 0) kick();
      }
      { std::lock_guard g(kick_mu); writers_left--; kick_gen++; }
      kick_cv.notify_all();
    });
  }
  for (int f = 0; f < kFlushers; f++) {
    threads.emplace_back([&] {
      uint64_t seen = 0;
      for (;;) {
        bool last_round;
        {
          std::unique_lock l(kick_mu);
          kick_cv.wait(l, [&] { return kick_gen != seen || writers_left == 0; });
          seen = kick_gen;
          last_round = writers_left == 0;
        }
        PageRef batch[kPages];
        size_t n = c->find_dirty_pages(kIno, 0, UINT64_MAX, batch);
        for (size_t i = 0; i < n; i++) {
          c->lock_page(batch[i]);
          if (batch[i]->attached() && c->test_clear_page_dirty(batch[i])) {
            uint64_t sum = xxh3(batch[i]->data(), kPageSize, batch[i]->index());
            // Never leave the loop early: the other threads would hang.
            bool started = c->set_page_writeback(batch[i]).ok();
            EXPECT_TRUE(started);
            c->unlock_page(batch[i]);
            if (started) {
              { std::lock_guard g(io_mu); ios.push_back({std::move(batch[i]), sum}); }
              io_cv.notify_one();
            }
          } else {
            c->unlock_page(batch[i]);
          }
        }
        if (last_round && n == 0) break;
      }
      { std::lock_guard g(io_mu); flushers_left--; }
      io_cv.notify_all();
    });
  }
  threads.emplace_back([&] {  // I/O completion
    for (;;) {
      Io io;
      {
        std::unique_lock l(io_mu);
        io_cv.wait(l, [&] { return !ios.empty() || flushers_left == 0; });
        if (ios.empty()) break;
        io = std::move(ios.front());
        ios.pop_front();
      }
      const uint8_t* d = io.page->data();
      if (xxh3(d, kPageSize, io.page->index()) != io.sum) torn++;
      disk[io.page->index()] = stamp_of(d);  // only this thread writes disk
      EXPECT_TRUE(c->end_page_writeback(io.page).ok());
    }
  });
  std::thread checker([&] {
    while (!stop_checker) {
      for (uint64_t i = 0; i < kPages; i++) {
        PageRef p = c->find_get_page(kIno, i);
        if (!p) continue;
        uint32_t f = p->flags();
        if ((f & Page::kDirty) && (f & Page::kWriteback)) dirty_and_writeback++;
      }
      std::this_thread::yield();
    }
  });
  for (auto& t : threads) t.join();
  stop_checker = true;
  checker.join();

  EXPECT_EQ(torn, 0);
  EXPECT_EQ(dirty_and_writeback, 0);
  EXPECT_EQ(c->dirty_count(), 0u);
  EXPECT_EQ(c->writeback_count(), 0u);
  EXPECT_LE(c->stats().cached_pages, 8u);
  EXPECT_EQ(c->stats().protocol_errors, 0u);
  for (uint64_t i = 0; i < kPages; i++) {
    EXPECT_EQ(disk[i], expected[i]) << "page " << i;  // the last write reached disk
    if (PageRef p = c->find_get_page(kIno, i)) {
      EXPECT_EQ(stamp_of(p->data()), disk[i]);
    }
  }
}

}  // namespace
}  // namespace stablefs
