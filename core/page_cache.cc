#include "core/page_cache.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>

namespace stablefs {
namespace {

constexpr int kShardBits = 6;   // 64 index shards
constexpr int kBucketBits = 8;  // 256 wait-table buckets
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;
// Pages gathered per round by wait_on_writeback_range; lives on the stack
// so fsync's wait allocates nothing.
constexpr size_t kWaitBatch = 64;

uint64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void raise_max(std::atomic<uint64_t>& max, uint64_t v) {
  uint64_t cur = max.load(std::memory_order_relaxed);
  while (v > cur && !max.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

}  // namespace

struct alignas(64) PageCache::Shard {
  // Protects the three sets and every page's membership in them: its hooks,
  // kAttached, shard_, and Dirty/Writeback as far as they mirror membership.
  // Lock order: after the page lock, before a wait bucket's mutex.
  std::mutex mu;
  IndexSet index;
  DirtySet dirty;          // attached pages with kDirty (flusher's tag)
  WritebackSet writeback;  // pages with kWriteback, attached or not
};

// The hashed wait table (the kernel's page_waitqueue): sleepers on a page's
// Locked or Writeback bit wait on its bucket's condition variable.
struct alignas(64) PageCache::WaitBucket {
  // Clearing Locked/Writeback and the sleepers' re-check both happen under
  // it, so no wakeup is lost. Innermost lock; also guards `waiters`.
  std::mutex mu;
  std::condition_variable cv;
  int waiters = 0;
};

Result<std::unique_ptr<PageCache>> PageCache::create(uint64_t capacity_bytes,
                                                     ShadowPoolConfig shadow) {
  uint64_t cap = capacity_bytes / kPageSize;
  if (cap == 0 || cap > UINT32_MAX || shadow.reserve > UINT32_MAX) return err(EINVAL);
  uint64_t n = cap + shadow.reserve;
  std::unique_ptr<PageCache> pc;
  try {
    pc.reset(new PageCache(n, shadow));
  } catch (const std::bad_alloc&) {
    return err(ENOMEM);
  }
  if (!pc->buffers_) return err(ENOMEM);
  // Fault the pool in now, so a page in use later never waits on (or fails)
  // an allocation in the kernel either.
  std::memset(pc->buffers_.get(), 0, n * kPageSize);
  for (size_t i = 0; i < n; i++) {
    Page& p = pc->frames_[i];
    p.data_ = pc->buffers_.get() + i * kPageSize;
    p.cache_ = pc.get();
  }
  for (size_t i = n; i-- > cap;) pc->reserve_.push_back(&pc->frames_[i]);
  for (size_t i = cap; i-- > 0;) pc->free_.push_back(&pc->frames_[i]);
  return pc;
}

PageCache::PageCache(size_t nframes, ShadowPoolConfig shadow)
    : nframes_(nframes),
      reserve_target_(shadow.reserve),
      shadow_max_(std::max(shadow.reserve, shadow.max_in_flight)),
      buffers_(static_cast<uint8_t*>(std::aligned_alloc(kPageSize, nframes * kPageSize)),
               &std::free),
      frames_(new Page[nframes]),
      shards_(new Shard[size_t{1} << kShardBits]),
      buckets_(new WaitBucket[size_t{1} << kBucketBits]) {
  free_.reserve(nframes);
  reserve_.reserve(reserve_target_);
}

PageCache::~PageCache() {
  for (size_t i = 0; i < nframes_; i++) {
    // Only the index's own reference may remain.
    assert(frames_[i].refs_.load() <= 1 && "PageRef outlived its PageCache");
  }
}

void PageCache::set_pressure_hook(std::function<void()> hook) { hook_ = std::move(hook); }

int PageCache::shard_index(uint64_t ino) const {
  return static_cast<int>((ino * kGolden) >> (64 - kShardBits));
}

PageCache::Shard& PageCache::shard_of(uint64_t ino) { return shards_[shard_index(ino)]; }

PageCache::WaitBucket& PageCache::bucket_of(const Page* p) {
  uint64_t i = static_cast<uint64_t>(p - frames_.get());
  return buckets_[(i * kGolden) >> (64 - kBucketBits)];
}

// --- Lookup -------------------------------------------------------------------

PageRef PageCache::find_get_page(uint64_t ino, uint64_t index) {
  Shard& s = shard_of(ino);
  std::lock_guard g(s.mu);
  auto it = s.index.find(PageKey{ino, index});
  if (it == s.index.end()) return PageRef();
  Page* p = &*it;
  p->refs_.fetch_add(1, std::memory_order_relaxed);
  if (!(p->flags() & Page::kReferenced))
    p->flags_.fetch_or(Page::kReferenced, std::memory_order_relaxed);
  return PageRef(p);
}

Result<PageRef> PageCache::grab_cache_page(uint64_t ino, uint64_t index, Alloc alloc) {
  for (;;) {
    if (PageRef ref = find_get_page(ino, index)) {
      lock_page(ref);
      if (ref->attached()) return ref;
      unlock_page(ref);  // truncated while we slept on the lock; retry
      continue;
    }
    Page* p = alloc_frame(alloc);
    if (!p) return err(EAGAIN);
    p->ino_ = ino;
    p->index_ = index;
    p->refs_.store(2, std::memory_order_relaxed);  // the index's and ours
    p->flags_.store(Page::kLocked, std::memory_order_relaxed);
    Shard& s = shard_of(ino);
    {
      std::lock_guard g(s.mu);
      if (s.index.insert_unique(*p).second) {
        p->flags_.fetch_or(Page::kAttached, std::memory_order_release);
        p->shard_.store(shard_index(ino), std::memory_order_release);
        return PageRef(p);
      }
    }
    // Another thread created it first: give the frame back and use theirs.
    p->refs_.store(0, std::memory_order_relaxed);
    p->flags_.store(0, std::memory_order_relaxed);
    free_frame(p);
  }
}

// --- Frames and eviction --------------------------------------------------------

Page* PageCache::pop_free() {
  std::lock_guard g(pool_mu_);
  if (free_.empty()) return nullptr;
  Page* p = free_.back();
  free_.pop_back();
  return p;
}

void PageCache::free_frame(Page* p) {
  assert(!p->index_hook_.is_linked() && !p->dirty_hook_.is_linked() &&
         !p->writeback_hook_.is_linked());
  bool shadowed = p->flags() & Page::kShadowed;
  if (shadowed) shadow_in_flight_.fetch_sub(1, std::memory_order_relaxed);
  p->flags_.store(0, std::memory_order_relaxed);
  p->shard_.store(-1, std::memory_order_relaxed);
  {
    std::lock_guard g(pool_mu_);
    // A shadowed frame refills the reserve first, as mempool_free does.
    // Only shadow copies drain the reserve, so only their old frames refill
    // it: a frame evicted for a thread waiting on memory always goes to
    // free_, where that thread looks.
    if (shadowed && reserve_.size() < reserve_target_) {
      reserve_.push_back(p);
      return;
    }
    free_.push_back(p);  // never reallocates: capacity reserved for all frames
  }
  pool_cv_.notify_one();
}

Page* PageCache::pop_reserve() {
  std::lock_guard g(pool_mu_);
  if (reserve_.empty()) return nullptr;
  Page* p = reserve_.back();
  reserve_.pop_back();
  return p;
}

// Takes an attached page whose only reference is the index's and which is
// clean, unlocked and not under writeback. p may be any frame in any state:
// everything is re-checked under the shard mutex that shard_ names.
bool PageCache::try_evict(Page* p) {
  int si = p->shard_.load(std::memory_order_acquire);
  if (si < 0) return false;
  Shard& s = shards_[si];
  std::lock_guard g(s.mu);
  if (p->shard_.load(std::memory_order_relaxed) != si) return false;
  if (p->flags() & (Page::kLocked | Page::kDirty | Page::kWriteback)) return false;
  uint32_t only_index = 1;
  if (!p->refs_.compare_exchange_strong(only_index, 0, std::memory_order_seq_cst))
    return false;
  s.index.erase(s.index.iterator_to(*p));
  p->flags_.store(0, std::memory_order_relaxed);
  p->shard_.store(-1, std::memory_order_relaxed);
  evictions_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

// CLOCK: a page touched since the hand last passed gets a second chance.
// Two sweeps are enough to find any evictable page.
Page* PageCache::reclaim_one() {
  for (size_t i = 0; i < 2 * nframes_; i++) {
    Page* p = &frames_[clock_hand_.fetch_add(1, std::memory_order_relaxed) % nframes_];
    uint32_t f = p->flags();
    if (!(f & Page::kAttached) || (f & (Page::kLocked | Page::kDirty | Page::kWriteback)))
      continue;
    if (p->refs_.load(std::memory_order_seq_cst) != 1) continue;
    if (f & Page::kReferenced) {
      p->flags_.fetch_and(~Page::kReferenced, std::memory_order_relaxed);
      continue;
    }
    if (try_evict(p)) return p;
  }
  return nullptr;
}

// Waiting for memory without a lost wakeup: a waiter announces itself in
// pressure_waiters_ before it scans; a thread that makes a page evictable
// does so with its reference drop, then reads pressure_waiters_ (both
// seq_cst). Either the scan sees the page evictable, or the dropper sees the
// waiter and evicts the page into free_ itself, which the waiter's condition
// checks under pool_mu_.
Page* PageCache::alloc_frame(Alloc alloc) {
  if (Page* p = pop_free()) return p;
  if (Page* p = reclaim_one()) return p;
  if (alloc == Alloc::kNoWait) return nullptr;

  pressure_waits_.fetch_add(1, std::memory_order_relaxed);
  pressure_waiters_.fetch_add(1, std::memory_order_seq_cst);
  Page* p = reclaim_one();
  if (!p) {
    if (hook_) hook_();  // outside every lock: it may take the flusher's
    std::unique_lock l(pool_mu_);
    pool_cv_.wait(l, [this] { return !free_.empty(); });
    p = free_.back();
    free_.pop_back();
  }
  pressure_waiters_.fetch_sub(1, std::memory_order_seq_cst);
  return p;
}

void PageCache::ref_dropped(Page* p, uint32_t old_refs) {
  if (old_refs == 1) {  // detached and now unreferenced: ours to free
    free_frame(p);
    return;
  }
  // Only the index's reference is left: evictable if clean. Hand it straight
  // to a thread waiting for memory.
  if (pressure_waiters_.load(std::memory_order_seq_cst) > 0 && try_evict(p)) free_frame(p);
}

// --- Page lock ------------------------------------------------------------------

bool PageCache::trylock_page(const PageRef& ref) {
  return !(ref->flags_.fetch_or(Page::kLocked, std::memory_order_acquire) & Page::kLocked);
}

void PageCache::lock_page(const PageRef& ref) {
  if (trylock_page(ref)) return;
  WaitBucket& b = bucket_of(ref.get());
  std::unique_lock l(b.mu);
  bool slept = false;
  // Unlock clears the bit under b.mu, so a failed attempt here cannot miss
  // the wakeup that follows it.
  while (!trylock_page(ref)) {
    if (!slept) lock_waits_.fetch_add(1, std::memory_order_relaxed);
    slept = true;
    b.waiters++;
    lock_waiters_now_.fetch_add(1, std::memory_order_relaxed);
    b.cv.wait(l);
    lock_waiters_now_.fetch_sub(1, std::memory_order_relaxed);
    b.waiters--;
  }
}

void PageCache::unlock_page(const PageRef& ref) {
  WaitBucket& b = bucket_of(ref.get());
  bool wake;
  {
    std::lock_guard g(b.mu);
    uint32_t old = ref->flags_.fetch_and(~Page::kLocked, std::memory_order_release);
    if (!(old & Page::kLocked)) violation();
    wake = b.waiters > 0;
  }
  if (wake) b.cv.notify_all();
}

// --- States ---------------------------------------------------------------------

Status PageCache::set_page_dirty(const PageRef& ref) {
  Page* p = ref.get();
  if (!p->locked()) {
    violation();
    return err(ENOLCK);
  }
  // Only a lock holder clears Dirty, and we hold the lock.
  if (p->dirty()) return Status::Ok();
  Shard& s = shard_of(p->ino_);
  std::lock_guard g(s.mu);
  p->flags_.fetch_or(Page::kDirty, std::memory_order_release);
  if (p->attached()) {
    s.dirty.insert_unique(*p);
    dirty_.fetch_add(1, std::memory_order_relaxed);
  }
  return Status::Ok();
}

bool PageCache::test_clear_page_dirty(const PageRef& ref) {
  Page* p = ref.get();
  if (!p->locked()) {
    violation();
    return false;
  }
  if (!p->dirty()) return false;
  Shard& s = shard_of(p->ino_);
  std::lock_guard g(s.mu);
  p->flags_.fetch_and(~Page::kDirty, std::memory_order_release);
  if (p->dirty_hook_.is_linked()) {
    s.dirty.erase(s.dirty.iterator_to(*p));
    dirty_.fetch_sub(1, std::memory_order_relaxed);
  }
  return true;
}

void PageCache::set_page_uptodate(const PageRef& ref) {
  ref->flags_.fetch_or(Page::kUptodate, std::memory_order_release);
}

void PageCache::clear_page_uptodate(const PageRef& ref) {
  ref->flags_.fetch_and(~Page::kUptodate, std::memory_order_release);
}

Status PageCache::set_page_writeback(const PageRef& ref) {
  Page* p = ref.get();
  Shard& s = shard_of(p->ino_);
  std::lock_guard g(s.mu);
  uint32_t f = p->flags();
  int e = !(f & Page::kLocked) ? ENOLCK : (f & Page::kDirty) ? EINVAL
                                       : (f & Page::kWriteback) ? EBUSY : 0;
  if (e) {
    violation();
    return err(e);
  }
  p->flags_.fetch_or(Page::kWriteback, std::memory_order_release);
  s.writeback.insert(*p);
  writeback_.fetch_add(1, std::memory_order_relaxed);
  return Status::Ok();
}

Status PageCache::end_page_writeback(const PageRef& ref) {
  Page* p = ref.get();
  Shard& s = shard_of(p->ino_);
  WaitBucket& b = bucket_of(p);
  bool wake;
  {
    // Shard first so the bit and writeback-set membership change together;
    // bucket inside so sleepers re-checking the bit cannot miss the wakeup.
    std::lock_guard g(s.mu);
    {
      std::lock_guard gb(b.mu);
      uint32_t old = p->flags_.fetch_and(~Page::kWriteback, std::memory_order_acq_rel);
      if (!(old & Page::kWriteback)) {
        violation();
        return err(EINVAL);
      }
      wake = b.waiters > 0;
    }
    s.writeback.erase(s.writeback.iterator_to(*p));
    writeback_.fetch_sub(1, std::memory_order_relaxed);
  }
  if (wake) b.cv.notify_all();
  return Status::Ok();
}

Status PageCache::wait_on_page_writeback(const PageRef& ref) {
  Page* p = ref.get();
  if (!p->locked()) {
    violation();
    return err(ENOLCK);
  }
  if (!p->writeback()) return Status::Ok();
  WaitBucket& b = bucket_of(p);
  uint64_t start = now_ns();
  {
    std::unique_lock l(b.mu);
    if (!p->writeback()) return Status::Ok();  // ended meanwhile: no stall
    b.waiters++;
    wb_waiters_now_.fetch_add(1, std::memory_order_relaxed);
    b.cv.wait(l, [p] { return !p->writeback(); });
    wb_waiters_now_.fetch_sub(1, std::memory_order_relaxed);
    b.waiters--;
  }
  uint64_t ns = now_ns() - start;
  wb_waits_.fetch_add(1, std::memory_order_relaxed);
  wb_wait_ns_.fetch_add(ns, std::memory_order_relaxed);
  raise_max(wb_wait_ns_max_, ns);
  return Status::Ok();
}

void PageCache::wait_writeback_unlocked(Page* p) {
  WaitBucket& b = bucket_of(p);
  std::unique_lock l(b.mu);
  if (!p->writeback()) return;
  b.waiters++;
  range_waiters_now_.fetch_add(1, std::memory_order_relaxed);
  b.cv.wait(l, [p] { return !p->writeback(); });
  range_waiters_now_.fetch_sub(1, std::memory_order_relaxed);
  b.waiters--;
}

Result<PageRef> PageCache::shadow_page(const PageRef& ref) {
  Page* old = ref.get();
  uint32_t f = old->flags();
  if (!(f & Page::kLocked) || !(f & Page::kWriteback) || !(f & Page::kAttached)) {
    violation();
    return err(EINVAL);
  }
  // The bound first: a shadowed frame lives until its write completes.
  if (shadow_in_flight_.fetch_add(1, std::memory_order_relaxed) >= shadow_max_) {
    shadow_in_flight_.fetch_sub(1, std::memory_order_relaxed);
    shadow_exhausted_.fetch_add(1, std::memory_order_relaxed);
    return err(EAGAIN);
  }
  Page* p = alloc_frame(Alloc::kNoWait);
  if (!p && (p = pop_reserve())) shadow_reserve_takes_.fetch_add(1, std::memory_order_relaxed);
  if (!p) {
    shadow_in_flight_.fetch_sub(1, std::memory_order_relaxed);
    shadow_exhausted_.fetch_add(1, std::memory_order_relaxed);
    return err(EAGAIN);
  }
  // old's bytes are stable: it is locked and under writeback.
  std::memcpy(p->data_, old->data_, kPageSize);
  p->ino_ = old->ino_;
  p->index_ = old->index_;
  p->refs_.store(2, std::memory_order_relaxed);
  p->flags_.store(Page::kLocked | (f & Page::kUptodate), std::memory_order_relaxed);
  int si = shard_index(old->ino_);
  Shard& s = shards_[si];
  {
    std::lock_guard g(s.mu);
    // old is locked by the caller, so neither truncate nor eviction has
    // detached it since the check above.
    s.index.erase(s.index.iterator_to(*old));
    s.index.insert_unique(*p);
    p->flags_.fetch_or(Page::kAttached, std::memory_order_release);
    p->shard_.store(si, std::memory_order_release);
    if (old->dirty_hook_.is_linked()) {  // the newer bytes own the Dirty state
      s.dirty.erase(s.dirty.iterator_to(*old));
      old->flags_.fetch_and(~Page::kDirty, std::memory_order_release);
      p->flags_.fetch_or(Page::kDirty, std::memory_order_release);
      s.dirty.insert_unique(*p);
    }
    old->flags_.fetch_and(~Page::kAttached, std::memory_order_release);
    old->flags_.fetch_or(Page::kShadowed, std::memory_order_release);  // counted in flight
    old->shard_.store(-1, std::memory_order_release);
    old->refs_.fetch_sub(1, std::memory_order_seq_cst);  // the index's; caller holds one
  }
  shadow_copies_.fetch_add(1, std::memory_order_relaxed);
  return PageRef(p);
}

// --- Writeback support ------------------------------------------------------------

size_t PageCache::find_dirty_pages(uint64_t ino, uint64_t first, uint64_t last,
                                   std::span<PageRef> out) {
  Shard& s = shard_of(ino);
  std::lock_guard g(s.mu);
  size_t n = 0;
  for (auto it = s.dirty.lower_bound(PageKey{ino, first});
       n < out.size() && it != s.dirty.end() && it->ino_ == ino && it->index_ <= last; ++it) {
    Page* p = &*it;
    p->refs_.fetch_add(1, std::memory_order_relaxed);
    out[n++] = PageRef(p);
  }
  return n;
}

std::vector<uint64_t> PageCache::dirty_inodes() {
  std::vector<uint64_t> inos;
  for (size_t i = 0; i < (size_t{1} << kShardBits); i++) {
    Shard& s = shards_[i];
    std::lock_guard g(s.mu);
    for (auto it = s.dirty.begin(); it != s.dirty.end();) {
      uint64_t ino = it->ino_;
      inos.push_back(ino);
      if (ino == UINT64_MAX) break;
      it = s.dirty.lower_bound(PageKey{ino + 1, 0});
    }
  }
  std::sort(inos.begin(), inos.end());
  return inos;
}

void PageCache::wait_on_writeback_range(uint64_t ino, uint64_t first, uint64_t last) {
  Shard& s = shard_of(ino);
  uint64_t next = first;
  for (;;) {
    PageRef batch[kWaitBatch];
    size_t n = 0;
    {
      std::lock_guard g(s.mu);
      for (auto it = s.writeback.lower_bound(PageKey{ino, next});
           n < kWaitBatch && it != s.writeback.end() && it->ino_ == ino && it->index_ <= last;
           ++it) {
        Page* p = &*it;
        p->refs_.fetch_add(1, std::memory_order_relaxed);
        batch[n++] = PageRef(p);
      }
    }
    for (size_t i = 0; i < n; i++) wait_writeback_unlocked(batch[i].get());
    if (n < kWaitBatch) return;
    // A full batch: resume at its last index (at most two pages share one).
    next = batch[n - 1]->index_;
  }
}

PageCacheStats PageCache::stats() const {
  auto r = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  PageCacheStats st;
  st.capacity_pages = capacity_pages();
  {
    std::lock_guard g(pool_mu_);
    st.cached_pages = nframes_ - free_.size() - reserve_.size();
    st.shadow_reserve_free = reserve_.size();
  }
  st.dirty_pages = r(dirty_);
  st.writeback_pages = r(writeback_);
  st.writeback_waits = r(wb_waits_);
  st.writeback_wait_ns_total = r(wb_wait_ns_);
  st.writeback_wait_ns_max = r(wb_wait_ns_max_);
  st.writeback_waiters_now = r(wb_waiters_now_);
  st.range_waiters_now = r(range_waiters_now_);
  st.lock_waits = r(lock_waits_);
  st.lock_waiters_now = r(lock_waiters_now_);
  st.pressure_waits = r(pressure_waits_);
  st.pressure_waiters_now = r(pressure_waiters_);
  st.evictions = r(evictions_);
  st.shadow_copies = r(shadow_copies_);
  st.shadow_reserve_takes = r(shadow_reserve_takes_);
  st.shadow_exhausted = r(shadow_exhausted_);
  st.shadow_in_flight = r(shadow_in_flight_);
  st.protocol_errors = r(violations_);
  return st;
}

// --- Truncation -------------------------------------------------------------------

// Removes a locked page from the index and cancels its Dirty state, so a
// flusher that already holds a reference skips it. Drops the index's
// reference; the caller's keeps the frame until it lets go.
void PageCache::detach(Page* p) {
  Shard& s = shard_of(p->ino_);
  std::lock_guard g(s.mu);
  if (!p->attached()) return;
  if (p->dirty_hook_.is_linked()) {
    s.dirty.erase(s.dirty.iterator_to(*p));
    dirty_.fetch_sub(1, std::memory_order_relaxed);
  }
  s.index.erase(s.index.iterator_to(*p));
  p->flags_.fetch_and(~(Page::kDirty | Page::kAttached), std::memory_order_release);
  p->shard_.store(-1, std::memory_order_release);
  p->refs_.fetch_sub(1, std::memory_order_seq_cst);
}

void PageCache::truncate_inode_pages(uint64_t ino, uint64_t from) {
  truncate_inode_pages_range(ino, from, UINT64_MAX);
}

void PageCache::truncate_inode_pages_range(uint64_t ino, uint64_t first, uint64_t last) {
  Shard& s = shard_of(ino);
  uint64_t next = first;
  for (;;) {
    PageRef ref;
    {
      std::lock_guard g(s.mu);
      auto it = s.index.lower_bound(PageKey{ino, next});
      if (it == s.index.end() || it->ino_ != ino || it->index_ > last) return;
      it->refs_.fetch_add(1, std::memory_order_relaxed);
      ref = PageRef(&*it);
    }
    lock_page(ref);
    // A page replaced by shadow_page while we slept: retry the same index.
    if (ref->attached()) {
      Status st = wait_on_page_writeback(ref);  // I/O must not outlive its page
      assert(st.ok());
      (void)st;
      detach(ref.get());
      next = ref->index_;
      if (next == UINT64_MAX) {
        unlock_page(ref);
        return;
      }
      next++;
    }
    unlock_page(ref);
  }
}

}  // namespace stablefs
