#include "core/io/fault_device.h"

#include <algorithm>
#include <cstring>

#include "core/base/format.h"

namespace stablefs {
namespace {

bool applies(FaultOn on, IoOp op) {
  auto bits = uint8_t(on);
  if (op == IoOp::kRead) return bits & uint8_t(FaultOn::kRead);
  if (op == IoOp::kWrite) return bits & uint8_t(FaultOn::kWrite);
  return false;
}

// Half-open block range [first, end) a read or write touches.
struct BlockRange {
  uint64_t first, end;
};
BlockRange range_of(const IoRequest& r) {
  return BlockRange{r.blocknr, r.blocknr + (r.bytes() + kBlockSize - 1) / kBlockSize};
}

// First entry of a blocknr-keyed map that falls inside range, or end().
template <class Map>
auto find_in(Map& m, BlockRange range) {
  auto it = m.lower_bound(range.first);
  return (it != m.end() && it->first < range.end) ? it : m.end();
}

struct alignas(kBlockSize) AlignedBlock {
  uint8_t bytes[kBlockSize];
};

}  // namespace

FaultDevice::FaultDevice(BlockDevice& inner) : inner_(inner) {}

FaultDevice::FaultDevice(std::unique_ptr<BlockDevice> inner)
    : owned_(std::move(inner)), inner_(*owned_) {}

FaultDevice::~FaultDevice() {
  {
    std::lock_guard lk(mu_);
    closing_ = true;
  }
  closing_cv_.notify_all();
}

void FaultDevice::fail_block(uint64_t blocknr, FaultOn on) {
  std::lock_guard lk(mu_);
  bad_blocks_[blocknr] = on;
}

void FaultDevice::heal_block(uint64_t blocknr) {
  std::lock_guard lk(mu_);
  bad_blocks_.erase(blocknr);
}

void FaultDevice::fail_transiently(uint64_t blocknr, FaultOn on, int times) {
  std::lock_guard lk(mu_);
  transient_[blocknr] = Transient{on, times};
}

void FaultDevice::tear_next_write(uint64_t blocknr, size_t keep_bytes) {
  std::lock_guard lk(mu_);
  tears_[blocknr] = keep_bytes;
}

void FaultDevice::set_latency(std::chrono::microseconds per_request) {
  std::lock_guard lk(mu_);
  latency_ = per_request;
}

void FaultDevice::set_before_write(WriteHook hook) {
  auto p = hook ? std::make_shared<const WriteHook>(std::move(hook)) : nullptr;
  std::lock_guard lk(mu_);
  before_write_ = std::move(p);
}

void FaultDevice::clear_faults() {
  std::lock_guard lk(mu_);
  bad_blocks_.clear();
  transient_.clear();
  tears_.clear();
  latency_ = std::chrono::microseconds(0);
  before_write_.reset();
}

Status FaultDevice::submit_and_wait(std::span<IoRequest*> requests) {
  Status first;
  for (IoRequest* r : requests) {
    switch (r->op) {
      case IoOp::kRead: reads_++; break;
      case IoOp::kWrite: writes_++; break;
      case IoOp::kFlush: flushes_++; break;
      case IoOp::kDiscard: break;
    }
    wait_latency();
    size_t keep = 0;
    switch (decide(*r, &keep)) {
      case Verdict::kFailEio:
        r->result = EIO;
        injected_++;
        break;
      case Verdict::kFailAgain:
        r->result = EAGAIN;
        injected_++;
        break;
      case Verdict::kTear:
        r->result = torn_write(*r, keep);
        injected_++;
        break;
      case Verdict::kForward:
        r->result = forward(*r);
        break;
    }
    if (r->result != 0 && first.ok()) first = err(r->result);
  }
  return first;
}

FaultDevice::Verdict FaultDevice::decide(const IoRequest& r, size_t* keep_bytes) {
  if (r.op == IoOp::kFlush || r.op == IoOp::kDiscard) return Verdict::kForward;
  BlockRange range = range_of(r);
  std::lock_guard lk(mu_);
  for (auto it = find_in(bad_blocks_, range); it != bad_blocks_.end() && it->first < range.end;
       ++it)
    if (applies(it->second, r.op)) return Verdict::kFailEio;
  for (auto it = find_in(transient_, range); it != transient_.end() && it->first < range.end;
       ++it) {
    if (applies(it->second.on, r.op) && it->second.remaining > 0) {
      if (--it->second.remaining == 0) transient_.erase(it);
      return Verdict::kFailAgain;
    }
  }
  if (r.op == IoOp::kWrite) {
    if (auto it = find_in(tears_, range); it != tears_.end()) {
      *keep_bytes = it->second;
      tears_.erase(it);
      return Verdict::kTear;
    }
  }
  return Verdict::kForward;
}

void FaultDevice::wait_latency() {
  std::unique_lock lk(mu_);
  if (latency_.count() == 0) return;
  // Injected delay, not synchronisation: nothing waits for this to end.
  auto deadline = std::chrono::steady_clock::now() + latency_;
  closing_cv_.wait_until(lk, deadline, [&] { return closing_; });
}

int FaultDevice::forward(IoRequest& r) {
  if (r.op == IoOp::kWrite) {
    std::shared_ptr<const WriteHook> hook;
    {
      std::lock_guard lk(mu_);
      hook = before_write_;
    }
    if (hook) (*hook)(r);
  }
  IoRequest* one[] = {&r};
  Status s = inner_.submit_and_wait(one);
  return s.ok() ? 0 : s.error();
}

int FaultDevice::torn_write(const IoRequest& r, size_t keep_bytes) {
  keep_bytes = std::min(keep_bytes, r.bytes());
  // Whole blocks of the prefix: the same segments, cut at a block boundary.
  IoRequest prefix;
  prefix.op = IoOp::kWrite;
  prefix.blocknr = r.blocknr;
  size_t whole = keep_bytes - keep_bytes % kBlockSize;
  const uint8_t* partial_src = nullptr;
  size_t taken = 0;
  for (int i = 0; i < r.iov_count && taken < keep_bytes; i++) {
    size_t len = r.iov[i].iov_len;
    auto* base = static_cast<uint8_t*>(r.iov[i].iov_base);
    if (taken + len <= whole) {
      prefix.add(base, len);
    } else {
      if (whole > taken) prefix.add(base, whole - taken);
      partial_src = base + (whole - std::min(whole, taken));
      taken = keep_bytes;
      break;
    }
    taken += len;
  }
  if (prefix.iov_count > 0) {
    if (int e = forward(prefix); e != 0) return e;
  }
  size_t tail = keep_bytes - whole;
  if (tail > 0 && partial_src != nullptr) {
    // A torn sector write leaves the old bytes after the tear.
    auto block = std::make_unique<AlignedBlock>();
    uint64_t blocknr = r.blocknr + whole / kBlockSize;
    if (Status s = inner_.read(blocknr, block->bytes, kBlockSize); !s.ok()) return s.error();
    std::memcpy(block->bytes, partial_src, tail);
    IoRequest last;
    last.op = IoOp::kWrite;
    last.blocknr = blocknr;
    last.add(block->bytes, kBlockSize);
    if (int e = forward(last); e != 0) return e;
  }
  return EIO;
}

}  // namespace stablefs
