#include "tools/wac/shared_run.h"

#include <cerrno>
#include <new>

#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <boost/interprocess/anonymous_shared_memory.hpp>
#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/sync/interprocess_semaphore.hpp>

namespace stablefs::wac {

namespace bip = boost::interprocess;

const char* step_name(Step s) {
  switch (s) {
    case Step::kOpen: return "open";
    case Step::kMmap: return "mmap";
    case Step::kWrite: return "write";
    case Step::kSyncFileRange: return "sync_file_range";
    case Step::kMsync: return "msync";
    case Step::kFsync: return "fsync";
    case Step::kCount: break;
  }
  return "?";
}

void WorkerSlot::record_error(Step step, int errnum) {
  if (errnum < 0 || errnum > kMaxErrno) errnum = kMaxErrno;
  errors[int(step)][errnum].fetch_add(1, std::memory_order_relaxed);
}

void WorkerSlot::record_latency(uint64_t ns) {
  latency[histogram_bucket(ns)].fetch_add(1, std::memory_order_relaxed);
  if (ns > latency_max_ns.load(std::memory_order_relaxed))
    latency_max_ns.store(ns, std::memory_order_relaxed);  // single writer: no CAS needed
}

LatencyHistogram WorkerSlot::histogram() const {
  LatencyHistogram h;
  for (size_t i = 0; i < kHistogramBuckets; i++) {
    uint64_t n = latency[i].load(std::memory_order_relaxed);
    if (n) h.add_bucket(i, n);
  }
  h.note_max(latency_max_ns.load(std::memory_order_relaxed));
  return h;
}

namespace {
struct Header {
  std::atomic<uint32_t> stop{0};
  bip::interprocess_semaphore ready{0};  // one post per worker when set up
  bip::interprocess_semaphore go{0};     // one post per worker to start
};
static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(std::atomic<uint64_t>::is_always_lock_free);
constexpr size_t kSlotsOffset = (sizeof(Header) + 63) / 64 * 64;
}  // namespace

struct SharedRun::Impl {
  bip::mapped_region region;
  Header* header = nullptr;
  WorkerSlot* slots = nullptr;
};

Result<std::unique_ptr<SharedRun>> SharedRun::create(size_t workers, std::string* why) {
  auto impl = std::make_unique<Impl>();
  try {
    impl->region = bip::anonymous_shared_memory(kSlotsOffset + workers * sizeof(WorkerSlot));
  } catch (const bip::interprocess_exception& e) {
    *why = std::string("cannot create the shared counters: ") + e.what();
    return err(ENOMEM);
  }
  auto* base = static_cast<char*>(impl->region.get_address());
  impl->header = new (base) Header();
  impl->slots = reinterpret_cast<WorkerSlot*>(base + kSlotsOffset);
  for (size_t i = 0; i < workers; i++) new (&impl->slots[i]) WorkerSlot();
  return std::unique_ptr<SharedRun>(new SharedRun(std::move(impl), workers));
}

SharedRun::SharedRun(std::unique_ptr<Impl> impl, size_t workers)
    : impl_(std::move(impl)), workers_(workers) {}

SharedRun::~SharedRun() {
  // Trivially destructible slots; the semaphores are destroyed explicitly
  // (in the parent only: a worker leaves through _exit).
  impl_->header->~Header();
}

WorkerSlot& SharedRun::slot(size_t i) { return impl_->slots[i]; }
const WorkerSlot& SharedRun::slot(size_t i) const { return impl_->slots[i]; }

void SharedRun::request_stop() { impl_->header->stop.store(1, std::memory_order_release); }
bool SharedRun::stop_requested() const {
  return impl_->header->stop.load(std::memory_order_acquire) != 0;
}

namespace {
// Boost's POSIX semaphores throw when a signal handler interrupts the wait
// (EINTR): with SIGTERM/SIGINT handlers installed that is an ordinary event,
// so the wait is simply resumed (the deadline is absolute).
template <class Wait>
auto retry_on_eintr(Wait wait) {
  for (;;) {
    try {
      return wait();
    } catch (const bip::interprocess_exception& e) {
      if (e.get_native_error() != EINTR) throw;
    }
  }
}
}  // namespace

void SharedRun::ready_and_wait_for_go() {
  impl_->header->ready.post();
  retry_on_eintr([&] { impl_->header->go.wait(); });
}

bool SharedRun::wait_all_ready(double deadline_s) {
  auto until = boost::posix_time::microsec_clock::universal_time() +
               boost::posix_time::microseconds(int64_t(deadline_s * 1e6));
  for (size_t i = 0; i < workers_; i++)
    if (!retry_on_eintr([&] { return impl_->header->ready.timed_wait(until); })) return false;
  return true;
}

void SharedRun::go() {
  for (size_t i = 0; i < workers_; i++) impl_->header->go.post();
}

}  // namespace stablefs::wac
