#include "journal/retired_versions.h"

#include <algorithm>
#include <mutex>
#include <vector>

#include "journal/buffer.h"

namespace stablefs {
namespace {

// Reclaiming a batch costs a scan of every thread's slots; batching keeps
// that off the hot path while bounding the memory waiting to be freed.
constexpr size_t kReclaimBatch = 64;

struct ThreadSlots {
  std::atomic<const MetaBlock*> slot[kHazardSlots] = {};
  size_t next = 0;  // owning thread only
};

struct Registry {
  // Protects threads and retired. A leaf lock: taken under MetaBuffer::mu_,
  // BufferCache::mu_ or Journal::Impl::mu (a buffer can die there), never
  // the reverse; no I/O under it.
  std::mutex mu;
  std::vector<ThreadSlots*> threads;
  std::vector<std::shared_ptr<MetaBlock>> retired;
  std::vector<const MetaBlock*> in_use;  // scratch for collect_unprotected
};

Registry& registry() {
  // Outlives every thread_local Registration: the main thread's
  // thread_locals are destroyed before any static object.
  static Registry r;
  return r;
}

struct Registration {
  std::unique_ptr<ThreadSlots> slots = std::make_unique<ThreadSlots>();
  Registration() {
    Registry& r = registry();
    std::lock_guard lk(r.mu);
    r.threads.push_back(slots.get());
  }
  ~Registration() {
    Registry& r = registry();
    std::lock_guard lk(r.mu);
    r.threads.erase(std::find(r.threads.begin(), r.threads.end(), slots.get()));
  }
};

thread_local Registration tls_hazards;

// Frees (outside the lock) every retired version no slot names. r.mu held.
std::vector<std::shared_ptr<MetaBlock>> collect_unprotected(Registry& r) {
  std::vector<std::shared_ptr<MetaBlock>> dead;
  if (r.retired.empty()) return dead;
  // A sorted vector, reused: a few slots per thread, searched once per
  // retired version (this ran with a hash set allocated per call, 4% of
  // the daemon's CPU under small fsyncs).
  std::vector<const MetaBlock*>& in_use = r.in_use;
  in_use.clear();
  for (ThreadSlots* t : r.threads)
    for (auto& s : t->slot)
      if (const MetaBlock* b = s.load(std::memory_order_seq_cst)) in_use.push_back(b);
  std::sort(in_use.begin(), in_use.end());
  auto keep = std::partition(r.retired.begin(), r.retired.end(), [&](const auto& b) {
    return std::binary_search(in_use.begin(), in_use.end(), b.get());
  });
  dead.assign(std::make_move_iterator(keep), std::make_move_iterator(r.retired.end()));
  r.retired.erase(keep, r.retired.end());
  return dead;
}

}  // namespace

MetaBlock* protect_live_version(const std::atomic<MetaBlock*>& live) {
  ThreadSlots& t = *tls_hazards.slots;
  std::atomic<const MetaBlock*>& slot = t.slot[t.next++ % kHazardSlots];
  MetaBlock* b = live.load(std::memory_order_acquire);
  // Publish, then check the version is still live: if it is, any retire
  // of it comes later and its reclaim sees this slot (both seq_cst).
  for (;;) {
    slot.store(b, std::memory_order_seq_cst);
    MetaBlock* again = live.load(std::memory_order_seq_cst);
    if (again == b) return b;
    b = again;
  }
}

void retire_version(std::shared_ptr<MetaBlock> b) {
  if (!b) return;
  Registry& r = registry();
  std::vector<std::shared_ptr<MetaBlock>> dead;
  std::lock_guard lk(r.mu);
  r.retired.push_back(std::move(b));
  if (r.retired.size() >= kReclaimBatch) dead = collect_unprotected(r);
  // `dead` is destroyed after the lock is released (declared before lk).
}

void reclaim_retired_versions() {
  Registry& r = registry();
  std::vector<std::shared_ptr<MetaBlock>> dead;
  std::lock_guard lk(r.mu);
  dead = collect_unprotected(r);
}

size_t retired_version_count() {
  Registry& r = registry();
  std::lock_guard lk(r.mu);
  return r.retired.size();
}

}  // namespace stablefs
