// The daemon's own page cache for file data, with the kernel's page states.
//
// A page is one kPageSize, kPageSize-aligned buffer (usable for O_DIRECT
// io_uring writes) caching bytes [index*kPageSize, (index+1)*kPageSize) of
// inode `ino`. Its states mean exactly what they mean in Linux:
//   Locked     a sleeping lock; the holder may change the page's bytes and
//              states. Taken outside every other lock in this file.
//   Uptodate   the bytes are valid (read from disk, or fully written).
//   Dirty      the bytes are newer than the backing store.
//   Writeback  an I/O is writing the bytes out. Set only while Locked (and
//              after Dirty was cleared); cleared only by end_page_writeback,
//              from I/O completion, without the page lock.
//
// The stable-page protocol (DESIGN.md, seed 002) in these terms:
//   writer:    grab_cache_page -> wait_on_page_writeback -> copy bytes in ->
//              set_page_dirty -> unlock_page
//   writeback: lock_page -> test_clear_page_dirty -> set_page_writeback ->
//              unlock_page -> checksum + submit -> end_page_writeback
// Because Writeback is only set under the page lock and a writer waits for
// it to clear while holding that lock, no byte changes between checksum and
// write completion.
//
// Memory: every page buffer comes from a pool allocated (and faulted in) at
// create(), sized by cache_size=. Nothing here allocates after that, so
// writeback (clear dirty, set/end writeback) can never fail for lack of
// memory. When the pool is empty, grab_cache_page evicts a clean page:
// unreferenced, not Locked, not Dirty, not under Writeback (CLOCK order).
//
// Shadow pool (stable_pages=shadow), a mempool in the sense of seed 003:
// `reserve` extra frames beyond the cache's capacity, preallocated with it,
// that only shadow_page may take, and only after the ordinary pool and
// eviction came up empty. A freed frame refills the reserve before the
// ordinary pool, so the reserve recovers as shadowed writes complete. The
// pool is bounded: at most `max_in_flight` shadowed frames (old copies
// still under writeback) exist at once; beyond that, or with the reserve
// empty, shadow_page says EAGAIN and the writer waits on writeback instead.
// Writeback itself never needs a frame, so it always makes progress.
//
// Lock order, outermost first:
//   1. page lock (Locked bit; sleeping). Hold at most one page lock of an
//      inode unless taking them in ascending index order.
//   2. Shard::mu  (per ino-hash shard of the index; leaf except for 3)
//   3. wait-table bucket mutex (per page hash; innermost)
//   pool_mu_ is a separate leaf: never held with 2 or 3.
// Locks 2, 3 and pool_mu_ are never held while sleeping on anything else or
// while calling the pressure hook.
//
// Why the memory-pressure wait cannot deadlock: a thread sleeping in
// grab_cache_page(kWait) holds no page lock (rule below), so every page it
// waits for is either Dirty (the flusher, kicked by the pressure hook, locks
// it and starts writeback), under Writeback (I/O completion ends it without
// any lock), Locked by a thread that will unlock without allocating, or
// referenced by a thread that drops its PageRef. Whoever makes a page
// evictable while someone waits evicts it into the pool and wakes them.
// Rules for callers, which this relies on:
//   - Never call grab_cache_page(kWait) while holding a page lock.
//   - Writeback and I/O completion never call grab_cache_page(kWait).
//   - capacity exceeds (threads that grab concurrently) x (PageRefs each
//     holds while grabbing); otherwise use kNoWait and handle EAGAIN.
//   - The pressure hook must not block; it only kicks the flusher.
//   - The flusher and I/O completion never need a lock that a thread
//     sleeping in grab_cache_page may hold (e.g. an inode's write lock).
// The page lock has no owner (like the kernel's: a read completion may
// unlock a page locked by the submitter), so "requires the page lock" is
// checked as "the page is Locked".
#pragma once

#include <atomic>
#include <compare>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

#include <boost/intrusive/set.hpp>

#include "core/base/result.h"

namespace stablefs {

constexpr size_t kPageSize = 4096;

struct PageKey {
  uint64_t ino;
  uint64_t index;
  auto operator<=>(const PageKey&) const = default;
};

class PageCache;

// One cache frame. Callers see it through a PageRef and change its state
// only through PageCache's functions below.
class Page {
 public:
  Page(const Page&) = delete;
  Page& operator=(const Page&) = delete;

  // Stable while the caller holds a PageRef (a frame is reused only after
  // its last reference is gone).
  uint64_t ino() const { return ino_; }
  uint64_t index() const { return index_; }
  // Write only while holding the page lock and after Writeback is clear.
  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }

  bool locked() const { return has(kLocked); }
  bool uptodate() const { return has(kUptodate); }
  bool dirty() const { return has(kDirty); }
  bool writeback() const { return has(kWriteback); }
  // False once truncate (or a shadow copy) removed the page from the index,
  // like page->mapping == NULL. Check after lock_page on a page found
  // before the lock was taken.
  bool attached() const { return has(kAttached); }
  // All state bits in one load: a consistent snapshot for checkers.
  uint32_t flags() const { return flags_.load(std::memory_order_acquire); }

  static constexpr uint32_t kLocked = 1u << 0;
  static constexpr uint32_t kUptodate = 1u << 1;
  static constexpr uint32_t kDirty = 1u << 2;
  static constexpr uint32_t kWriteback = 1u << 3;
  static constexpr uint32_t kAttached = 1u << 4;
  static constexpr uint32_t kReferenced = 1u << 5;  // CLOCK second chance
  static constexpr uint32_t kShadowed = 1u << 6;    // detached by shadow_page

 private:
  friend class PageCache;
  friend class PageRef;
  using Hook = boost::intrusive::set_member_hook<
      boost::intrusive::link_mode<boost::intrusive::safe_link>>;

  Page() = default;
  bool has(uint32_t bit) const { return flags() & bit; }

  std::atomic<uint32_t> flags_{0};
  // PageRefs, plus one held by the index while attached. The frame goes
  // back to the pool when it reaches 0.
  std::atomic<uint32_t> refs_{0};
  // Shard this frame is indexed in, or -1. Changed only under that shard's
  // mutex; lets the CLOCK scan find the right lock for a frame it does not
  // own (ino_ may be rewritten while the frame is free).
  std::atomic<int> shard_{-1};
  uint64_t ino_ = 0;    // written only while the frame is free
  uint64_t index_ = 0;  // written only while the frame is free
  uint8_t* data_ = nullptr;
  PageCache* cache_ = nullptr;
  Hook index_hook_;      // Shard::index, while attached
  Hook dirty_hook_;      // Shard::dirty, while Dirty and attached
  Hook writeback_hook_;  // Shard::writeback, while Writeback (even detached)
};

// A counted reference: the page cannot be evicted or its frame reused while
// any PageRef to it exists. Copying takes another reference.
class PageRef {
 public:
  PageRef() = default;
  PageRef(const PageRef& o) : p_(o.p_) {
    if (p_) p_->refs_.fetch_add(1, std::memory_order_relaxed);
  }
  PageRef(PageRef&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  PageRef& operator=(PageRef o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~PageRef() { reset(); }

  void reset();
  Page* get() const { return p_; }
  Page* operator->() const { return p_; }
  Page& operator*() const { return *p_; }
  explicit operator bool() const { return p_ != nullptr; }

 private:
  friend class PageCache;
  explicit PageRef(Page* adopted) : p_(adopted) {}  // reference already counted
  Page* p_ = nullptr;
};

// A snapshot. The wait counters become the mount's live counters.
struct PageCacheStats {
  uint64_t capacity_pages = 0;
  uint64_t cached_pages = 0;      // frames holding a page (attached or not)
  uint64_t dirty_pages = 0;
  uint64_t writeback_pages = 0;
  // wait_on_page_writeback calls that actually slept, and for how long.
  uint64_t writeback_waits = 0;
  uint64_t writeback_wait_ns_total = 0;
  uint64_t writeback_wait_ns_max = 0;
  uint64_t writeback_waiters_now = 0;  // threads asleep in it right now
  uint64_t range_waiters_now = 0;      // asleep in wait_on_writeback_range
  uint64_t lock_waits = 0;             // lock_page calls that slept
  uint64_t lock_waiters_now = 0;
  uint64_t pressure_waits = 0;  // grab_cache_page calls that slept for a frame
  uint64_t pressure_waiters_now = 0;
  uint64_t evictions = 0;
  uint64_t shadow_copies = 0;
  uint64_t shadow_reserve_takes = 0;  // shadow copies whose frame came from the reserve
  uint64_t shadow_exhausted = 0;      // shadow_page EAGAINs (pool empty or at its bound)
  uint64_t shadow_in_flight = 0;      // shadowed frames still under writeback now
  uint64_t shadow_reserve_free = 0;   // reserve frames free now
  uint64_t protocol_errors = 0;  // calls rejected for breaking the protocol
};

struct ShadowPoolConfig {
  size_t reserve = 64;         // frames beyond capacity, for shadow copies only
  size_t max_in_flight = 256;  // shadowed frames alive at once (>= reserve)
};

class PageCache {
 public:
  enum class Alloc { kWait, kNoWait };

  // capacity_bytes is rounded down to whole pages; EINVAL below one page,
  // ENOMEM if the pool cannot be allocated.
  static Result<std::unique_ptr<PageCache>> create(uint64_t capacity_bytes,
                                                   ShadowPoolConfig shadow = {});
  ~PageCache();  // every PageRef must be gone

  // Called (outside all locks) by a thread about to sleep for a free frame.
  // Must not block. Set it before the cache is shared between threads.
  void set_pressure_hook(std::function<void()> hook);

  // --- Lookup -------------------------------------------------------------
  // The page, referenced but not locked; empty if not cached.
  PageRef find_get_page(uint64_t ino, uint64_t index);
  // The page, referenced and Locked, created (!Uptodate, !Dirty, contents
  // unspecified) if absent. kNoWait only means "don't sleep for memory"
  // (EAGAIN when no frame is free or evictable); it may still sleep on the
  // page lock.
  Result<PageRef> grab_cache_page(uint64_t ino, uint64_t index,
                                  Alloc alloc = Alloc::kWait);

  // --- Page lock ----------------------------------------------------------
  void lock_page(const PageRef& page);
  bool trylock_page(const PageRef& page);
  void unlock_page(const PageRef& page);  // wakes one class of waiters

  // --- States ---------------------------------------------------------------
  // ENOLCK unless the caller holds the page lock.
  Status set_page_dirty(const PageRef& page);
  // Clears Dirty and returns whether it was set (clear_page_dirty_for_io).
  // Requires the page lock; without it, counts a protocol error and
  // returns false so writeback skips the page.
  bool test_clear_page_dirty(const PageRef& page);
  void set_page_uptodate(const PageRef& page);
  void clear_page_uptodate(const PageRef& page);  // after a failed read

  // Requires the page lock (ENOLCK), Dirty clear (EINVAL) and Writeback
  // clear (EBUSY); on error nothing changes.
  Status set_page_writeback(const PageRef& page);
  // I/O completion, without the page lock, holding a PageRef for the I/O.
  // EINVAL if Writeback was not set.
  Status end_page_writeback(const PageRef& page);
  // Sleeps while Writeback is set. Requires the page lock (ENOLCK), which
  // keeps a new writeback from starting once this returns.
  Status wait_on_page_writeback(const PageRef& page);

  // shadow stable pages: `page` is locked and under Writeback. Puts a copy
  // (Locked, same Uptodate/Dirty) in the index in its place and returns it;
  // the old page stays under writeback, detached, and its frame is freed
  // when the I/O drops its reference. Never sleeps for memory: EAGAIN when
  // the shadow pool is exhausted (no free, evictable or reserve frame, or
  // max_in_flight shadowed frames alive); the caller falls back to waiting.
  // EINVAL if `page` is not locked, not under writeback, or no longer
  // attached.
  Result<PageRef> shadow_page(const PageRef& page);

  // --- Writeback support ----------------------------------------------------
  // Dirty pages of `ino` with first <= index <= last, ascending, at most
  // out.size(); fills `out` (no allocation) and returns how many. Continue
  // from out[n-1]->index() + 1.
  size_t find_dirty_pages(uint64_t ino, uint64_t first, uint64_t last,
                          std::span<PageRef> out);
  // Inodes with at least one dirty page, ascending (for the flusher).
  std::vector<uint64_t> dirty_inodes();
  // Sleeps until no page of `ino` in [first, last] is under writeback,
  // including detached ones (filemap_fdatawait_range). No page lock needed.
  void wait_on_writeback_range(uint64_t ino, uint64_t first, uint64_t last);

  uint64_t dirty_count() const { return dirty_.load(std::memory_order_relaxed); }
  uint64_t writeback_count() const {
    return writeback_.load(std::memory_order_relaxed);
  }
  uint64_t capacity_pages() const { return nframes_ - reserve_target_; }
  PageCacheStats stats() const;

  // --- Truncation -------------------------------------------------------------
  // Removes pages with index >= from (truncate_inode_pages) or in
  // [first, last] (punch hole): each is locked, its writeback waited out,
  // its Dirty cancelled and it is detached. Zeroing the tail of a partial
  // boundary page is the caller's job, under that page's lock.
  void truncate_inode_pages(uint64_t ino, uint64_t from);
  void truncate_inode_pages_range(uint64_t ino, uint64_t first, uint64_t last);

 private:
  friend class PageRef;
  struct Shard;
  struct WaitBucket;
  struct KeyOf {
    using type = PageKey;
    PageKey operator()(const Page& p) const { return {p.ino_, p.index_}; }
  };
  template <Page::Hook Page::*H>
  using PageSet = boost::intrusive::set<
      Page, boost::intrusive::member_hook<Page, Page::Hook, H>,
      boost::intrusive::key_of_value<KeyOf>,
      boost::intrusive::constant_time_size<false>>;
  using IndexSet = PageSet<&Page::index_hook_>;
  using DirtySet = PageSet<&Page::dirty_hook_>;
  // A multiset: a shadowed page and its replacement can both be under
  // writeback at the same (ino, index).
  using WritebackSet = boost::intrusive::multiset<
      Page, boost::intrusive::member_hook<Page, Page::Hook, &Page::writeback_hook_>,
      boost::intrusive::key_of_value<KeyOf>,
      boost::intrusive::constant_time_size<false>>;

  PageCache(size_t nframes, ShadowPoolConfig shadow);
  Shard& shard_of(uint64_t ino);
  int shard_index(uint64_t ino) const;
  WaitBucket& bucket_of(const Page* p);

  void ref_dropped(Page* p, uint32_t old_refs);
  Page* alloc_frame(Alloc alloc);
  Page* pop_free();
  Page* pop_reserve();
  Page* reclaim_one();
  bool try_evict(Page* p);
  void free_frame(Page* p);
  void violation() { violations_.fetch_add(1, std::memory_order_relaxed); }
  void detach(Page* p);
  void wait_writeback_unlocked(Page* p);

  const size_t nframes_;  // capacity plus the shadow reserve
  const size_t reserve_target_;
  const size_t shadow_max_;
  std::unique_ptr<uint8_t, void (*)(void*)> buffers_;
  std::unique_ptr<Page[]> frames_;
  std::unique_ptr<Shard[]> shards_;
  std::unique_ptr<WaitBucket[]> buckets_;

  // Protects free_. A leaf: never held with any other lock here.
  mutable std::mutex pool_mu_;
  std::condition_variable pool_cv_;  // free_ became non-empty
  std::vector<Page*> free_;          // capacity reserved at create()
  std::vector<Page*> reserve_;       // the shadow reserve; also under pool_mu_
  std::function<void()> hook_;       // set before sharing; read unlocked

  std::atomic<size_t> clock_hand_{0};
  std::atomic<uint64_t> pressure_waiters_{0};
  std::atomic<uint64_t> dirty_{0};
  std::atomic<uint64_t> writeback_{0};

  // Statistics; relaxed, read by stats().
  std::atomic<uint64_t> wb_waits_{0}, wb_wait_ns_{0}, wb_wait_ns_max_{0},
      wb_waiters_now_{0}, range_waiters_now_{0}, lock_waits_{0}, lock_waiters_now_{0},
      pressure_waits_{0}, evictions_{0}, shadow_copies_{0}, violations_{0},
      shadow_reserve_takes_{0}, shadow_exhausted_{0}, shadow_in_flight_{0};
};

// The index holds one reference on every attached page, so a count of 1
// means "only the index": evictable if clean. seq_cst pairs with the
// pressure waiters' scan (see alloc_frame) so no wakeup is lost.
inline void PageRef::reset() {
  if (!p_) return;
  Page* p = std::exchange(p_, nullptr);
  uint32_t old = p->refs_.fetch_sub(1, std::memory_order_seq_cst);
  if (old <= 2) p->cache_->ref_dropped(p, old);
}

}  // namespace stablefs
