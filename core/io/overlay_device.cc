#include "core/io/overlay_device.h"

#include <cstring>

#include "core/base/format.h"

namespace stablefs {
namespace {

// Calls fn(blocknr, pointer to that block's bytes) for every block of r.
template <class Fn>
void for_each_block(const IoRequest& r, Fn fn) {
  uint64_t b = r.blocknr;
  for (int i = 0; i < r.iov_count; i++) {
    auto* p = static_cast<uint8_t*>(r.iov[i].iov_base);
    for (size_t off = 0; off < r.iov[i].iov_len; off += kBlockSize, b++) fn(b, p + off);
  }
}

}  // namespace

Status OverlayDevice::submit_and_wait(std::span<IoRequest*> requests) {
  Status first;
  auto fail = [&](IoRequest* r, int e) {
    r->result = e;
    if (first.ok()) first = err(e);
  };
  std::vector<IoRequest*> reads;
  for (IoRequest* r : requests) {
    r->result = 0;
    if (r->op == IoOp::kFlush) continue;  // nothing of ours is volatile
    if (r->op != IoOp::kRead && r->op != IoOp::kWrite) {
      fail(r, EINVAL);
      continue;
    }
    if (int e = check_request_shape(*r, block_count()); e != 0) {
      fail(r, e);
      continue;
    }
    if (r->op == IoOp::kRead) reads.push_back(r);
  }
  // The base's bytes for every read first; then, in batch order, writes
  // are kept and reads patched with what the overlay holds. (A batch
  // promises no order, so batch order is as good as any.)
  if (!reads.empty()) {
    Status s = base_.submit_and_wait(reads);
    for (IoRequest* r : reads)
      if (r->result != 0) fail(r, r->result);
    if (!s.ok() && first.ok()) first = s;
  }
  std::lock_guard lk(mu_);
  for (IoRequest* r : requests) {
    if (r->result != 0 || r->op == IoOp::kFlush) continue;
    if (r->op == IoOp::kWrite) {
      for_each_block(*r, [&](uint64_t b, uint8_t* p) { blocks_[b].assign(p, p + kBlockSize); });
    } else {
      for_each_block(*r, [&](uint64_t b, uint8_t* p) {
        if (auto it = blocks_.find(b); it != blocks_.end())
          std::memcpy(p, it->second.data(), kBlockSize);
      });
    }
  }
  return first;
}

size_t OverlayDevice::blocks_held() const {
  std::lock_guard lk(mu_);
  return blocks_.size();
}

}  // namespace stablefs
