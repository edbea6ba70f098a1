#include "core/io/uring_device.h"

#include <fcntl.h>
#include <liburing.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <cassert>
#include <cstdint>

#include "core/base/format.h"

namespace stablefs {

// One io_uring plus the bookkeeping for the requests in flight on it. Slots
// are preallocated: a request in flight owns one slot, whose index is the
// SQE's user_data, and which remembers how often the request was retried.
struct UringDevice::Ring {
  struct Slot {
    IoRequest* req = nullptr;
    int attempts = 0;
  };

  io_uring ring{};
  bool initialized = false;
  // Set when the ring could neither submit nor be rebuilt; every request
  // given to it then fails with EIO instead of hanging.
  bool broken = false;
  std::array<Slot, kRingDepth> slots{};
  std::array<uint16_t, kRingDepth> free_slots{};
  unsigned free_count = 0;

  Ring() = default;
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring() { shut_down(); }

  int start() {
    int rc = io_uring_queue_init(kRingDepth, &ring, 0);
    if (rc < 0) return -rc;
    initialized = true;
    reset_slots();
    return 0;
  }
  void shut_down() {
    if (initialized) io_uring_queue_exit(&ring);
    initialized = false;
  }
  void reset_slots() {
    for (Slot& s : slots) s = Slot{};
    for (unsigned i = 0; i < kRingDepth; i++) free_slots[i] = uint16_t(i);
    free_count = kRingDepth;
  }
};

// Returns the leased ring to the pool on every exit path.
class UringDevice::RingLease {
 public:
  explicit RingLease(UringDevice& dev) : dev_(dev), ring_(dev.acquire_ring()) {}
  ~RingLease() { dev_.release_ring(ring_); }
  RingLease(const RingLease&) = delete;
  RingLease& operator=(const RingLease&) = delete;
  Ring& operator*() const { return *ring_; }

 private:
  UringDevice& dev_;
  Ring* ring_;
};

namespace {

bool is_flush(const IoRequest* r) { return r->op == IoOp::kFlush; }

}  // namespace

UringDevice::UringDevice(Key, int fd, const Config& cfg)
    : fd_(fd), cfg_(cfg), rings_(std::make_unique<Ring[]>(kRingCount)) {}

UringDevice::~UringDevice() {
  rings_.reset();
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<UringDevice>> UringDevice::create(int fd, const Config& cfg) {
  auto dev = std::make_unique<UringDevice>(Key{}, fd, cfg);
  for (int i = 0; i < kRingCount; i++) {
    if (int e = dev->rings_[i].start(); e != 0) return err(e);  // dev closes fd
    dev->free_rings_[i] = &dev->rings_[i];
  }
  dev->free_count_ = kRingCount;
  return dev;
}

void UringDevice::set_completion_hook(CompletionHook hook) {
  auto p = hook ? std::make_shared<const CompletionHook>(std::move(hook)) : nullptr;
  std::lock_guard lk(hook_mu_);
  hook_ = std::move(p);
}

UringDevice::Ring* UringDevice::acquire_ring() {
  std::unique_lock lk(pool_mu_);
  pool_cv_.wait(lk, [&] { return free_count_ > 0; });
  return free_rings_[--free_count_];
}

void UringDevice::release_ring(Ring* ring) {
  {
    std::lock_guard lk(pool_mu_);
    free_rings_[free_count_++] = ring;
  }
  pool_cv_.notify_one();
}

Status UringDevice::submit_and_wait(std::span<IoRequest*> requests) {
  if (requests.empty()) return Status::Ok();
  for (IoRequest* r : requests) r->result = validate_request(*r, cfg_.block_count, cfg_.read_only);

  std::shared_ptr<const CompletionHook> hook;
  {
    std::lock_guard lk(hook_mu_);
    hook = hook_;
  }

  {
    RingLease ring(*this);
    // Flushes are barriers: each runs alone, after everything before it in
    // the batch completed and before anything after it is submitted.
    size_t i = 0;
    while (i < requests.size()) {
      size_t j = i + 1;
      if (!is_flush(requests[i]))
        while (j < requests.size() && !is_flush(requests[j])) j++;
      run_group(*ring, requests.subspan(i, j - i), hook.get());
      i = j;
    }
  }

  for (IoRequest* r : requests)
    if (r->result != 0) return err(r->result);
  return Status::Ok();
}

void UringDevice::run_group(Ring& r, std::span<IoRequest*> requests, const CompletionHook* hook) {
  if (r.broken) {
    for (IoRequest* q : requests)
      if (q->result == 0) q->result = EIO;
    return;
  }
  r.reset_slots();
  unsigned queued = 0;     // SQEs prepared but not yet accepted by the kernel
  unsigned in_flight = 0;  // accepted, completion not yet reaped

  auto prepare = [&](uint16_t slot) {
    // Never fails: each SQE belongs to a slot, and there are exactly as
    // many slots as SQ entries.
    io_uring_sqe* sqe = io_uring_get_sqe(&r.ring);
    assert(sqe != nullptr);
    IoRequest* q = r.slots[slot].req;
    uint64_t offset = q->blocknr * kBlockSize;
    switch (q->op) {
      case IoOp::kRead:
        io_uring_prep_readv(sqe, fd_, q->iov, unsigned(q->iov_count), offset);
        break;
      case IoOp::kWrite:
        io_uring_prep_writev(sqe, fd_, q->iov, unsigned(q->iov_count), offset);
        // pwritev2's RWF_DSYNC: the write and an fdatasync of its range in
        // one operation (the kernel sets FUA on the bio where it can).
        if (q->fua) sqe->rw_flags = RWF_DSYNC;
        break;
      case IoOp::kFlush:
        io_uring_prep_fsync(sqe, fd_, IORING_FSYNC_DATASYNC);
        break;
      case IoOp::kDiscard:
        // On an image file the host filesystem frees the range; on a block
        // device the kernel turns it into a zeroing that unmaps where the
        // device can (EOPNOTSUPP where it cannot).
        io_uring_prep_fallocate(sqe, fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset,
                                q->discard_blocks * kBlockSize);
        break;
    }
    io_uring_sqe_set_data64(sqe, slot);
    queued++;
  };

  auto complete = [&](uint16_t slot, int res) {
    Ring::Slot& s = r.slots[slot];
    IoRequest* q = s.req;
    if (hook) res = (*hook)(*q, res);
    int64_t expected = q->op == IoOp::kRead || q->op == IoOp::kWrite ? int64_t(q->bytes()) : 0;
    bool transient = res == -EAGAIN || res == -EINTR || (res >= 0 && res < expected);
    if (transient && s.attempts < kMaxRetries) {
      // The whole request again, at the same offset: idempotent.
      s.attempts++;
      retries_.fetch_add(1, std::memory_order_relaxed);
      prepare(slot);
      return;
    }
    if (transient || res > expected) {
      q->result = EIO;
    } else {
      q->result = res < 0 ? -res : 0;
    }
    s.req = nullptr;
    r.free_slots[r.free_count++] = slot;
  };

  size_t next = 0;
  int stalled_submits = 0;
  for (;;) {
    while (next < requests.size() && r.free_count > 0) {
      IoRequest* q = requests[next++];
      if (q->result != 0) continue;  // failed validation
      uint16_t slot = r.free_slots[--r.free_count];
      r.slots[slot] = Ring::Slot{q, 0};
      prepare(slot);
    }
    if (queued == 0 && in_flight == 0) break;

    if (queued > 0) {
      int n = io_uring_submit(&r.ring);
      if (n > 0) {
        queued -= unsigned(n);
        in_flight += unsigned(n);
        stalled_submits = 0;
      }
    }
    if (in_flight == 0) {
      // The kernel accepted nothing and nothing is pending to reap. Retry a
      // few times (EAGAIN, EINTR), then rebuild the ring: its SQ still holds
      // entries pointing at our requests, which must never be submitted later.
      if (++stalled_submits <= kMaxRetries) continue;
      for (Ring::Slot& s : r.slots)
        if (s.req) s.req->result = EIO;
      for (size_t i = next; i < requests.size(); i++)
        if (requests[i]->result == 0) requests[i]->result = EIO;
      r.shut_down();
      if (r.start() != 0) r.broken = true;
      return;
    }

    // Reap before submitting more: waiting for SQ space while completions
    // are pending could deadlock a full ring.
    io_uring_cqe* cqe = nullptr;
    int w = io_uring_wait_cqe(&r.ring, &cqe);
    if (w < 0) continue;  // EINTR: the I/O is still in flight; wait again
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&r.ring, head, cqe) {
      seen++;
      in_flight--;
      complete(uint16_t(io_uring_cqe_get_data64(cqe)), cqe->res);
    }
    io_uring_cq_advance(&r.ring, seen);
  }
}

}  // namespace stablefs
