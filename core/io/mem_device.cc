#include "core/io/mem_device.h"

#include <cstring>

#include "core/base/format.h"

namespace stablefs {

MemDevice::MemDevice(uint64_t blocks, bool native_fua)
    : blocks_(blocks), native_fua_(native_fua), durable_(blocks * kBlockSize, 0) {}

Status MemDevice::submit_and_wait(std::span<IoRequest*> requests) {
  std::lock_guard lk(mu_);
  Status first;
  for (IoRequest* r : requests) {
    r->result = 0;
    if (r->op == IoOp::kFlush) {
      for (auto& [b, bytes] : volatile_)
        std::memcpy(durable_.data() + b * kBlockSize, bytes.data(), kBlockSize);
      volatile_.clear();
      flushes_++;
      continue;
    }
    if (r->op == IoOp::kDiscard) {
      if (r->blocknr + r->discard_blocks > blocks_) {
        r->result = EINVAL;
        if (first.ok()) first = err(EINVAL);
        continue;
      }
      for (uint64_t b = r->blocknr; b < r->blocknr + r->discard_blocks; b++) volatile_.erase(b);
      std::memset(durable_.data() + r->blocknr * kBlockSize, 0, r->discard_blocks * kBlockSize);
      discarded_ += r->discard_blocks;
      continue;
    }
    if (r->op == IoOp::kWrite && r->fua) fua_writes_++;
    size_t len = r->bytes();
    if (len % kBlockSize != 0 || r->blocknr + len / kBlockSize > blocks_) {
      r->result = EINVAL;
      if (first.ok()) first = err(EINVAL);
      continue;
    }
    uint64_t b = r->blocknr;
    for (int i = 0; i < r->iov_count; i++) {
      auto* p = static_cast<uint8_t*>(r->iov[i].iov_base);
      for (size_t off = 0; off < r->iov[i].iov_len; off += kBlockSize, b++) {
        if (r->op == IoOp::kWrite && r->fua) {
          volatile_.erase(b);
          std::memcpy(durable_.data() + b * kBlockSize, p + off, kBlockSize);
          writes_++;
        } else if (r->op == IoOp::kWrite) {
          volatile_[b].assign(p + off, p + off + kBlockSize);
          writes_++;
        } else if (auto it = volatile_.find(b); it != volatile_.end()) {
          std::memcpy(p + off, it->second.data(), kBlockSize);
        } else {
          std::memcpy(p + off, durable_.data() + b * kBlockSize, kBlockSize);
        }
      }
    }
  }
  return first;
}

void MemDevice::crash() {
  std::lock_guard lk(mu_);
  volatile_.clear();
}

std::vector<uint8_t> MemDevice::durable_block(uint64_t blocknr) const {
  std::lock_guard lk(mu_);
  auto* p = durable_.data() + blocknr * kBlockSize;
  return std::vector<uint8_t>(p, p + kBlockSize);
}

void MemDevice::poke(uint64_t blocknr, size_t offset, uint8_t value) {
  std::lock_guard lk(mu_);
  durable_[blocknr * kBlockSize + offset] = value;
  if (auto it = volatile_.find(blocknr); it != volatile_.end()) it->second[offset] = value;
}

uint64_t MemDevice::flush_count() const {
  std::lock_guard lk(mu_);
  return flushes_;
}

uint64_t MemDevice::write_count() const {
  std::lock_guard lk(mu_);
  return writes_;
}

uint64_t MemDevice::discarded_blocks() const {
  std::lock_guard lk(mu_);
  return discarded_;
}

uint64_t MemDevice::fua_write_count() const {
  std::lock_guard lk(mu_);
  return fua_writes_;
}

}  // namespace stablefs
