#include "journal/buffer.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "journal/retired_versions.h"

namespace stablefs {

AlignedBlock::AlignedBlock()
    : p_(static_cast<uint8_t*>(std::aligned_alloc(kBlockSize, kBlockSize))) {
  if (!p_) std::abort();  // metadata buffers are not optional; see BufferCache
  std::memset(p_.get(), 0, kBlockSize);
}

void AlignedBlock::Free::operator()(uint8_t* p) const { std::free(p); }

FrozenBlock::FrozenBlock(std::shared_ptr<MetaBlock> b) : block_(std::move(b)) {
  block_->journal_refs.fetch_add(1, std::memory_order_relaxed);
}

FrozenBlock& FrozenBlock::operator=(FrozenBlock&& o) noexcept {
  if (this != &o) {
    release();
    block_ = std::move(o.block_);
  }
  return *this;
}

void FrozenBlock::release() {
  if (!block_) return;
  block_->journal_refs.fetch_sub(1, std::memory_order_release);
  block_.reset();
}

MetaBuffer::MetaBuffer(uint64_t blocknr)
    : blocknr_(blocknr), block_(std::make_shared<MetaBlock>()) {
  live_.store(block_.get(), std::memory_order_seq_cst);
}

// A reader may still hold a pointer into either version.
MetaBuffer::~MetaBuffer() {
  retire_version(std::move(retired_));
  retire_version(std::move(block_));
}

uint8_t* MetaBuffer::data() { return protect_live_version(live_)->bytes.data(); }
const uint8_t* MetaBuffer::data() const { return protect_live_version(live_)->bytes.data(); }

bool MetaBuffer::prepare_write() {
  std::lock_guard lk(mu_);
  if (block_->journal_refs.load(std::memory_order_acquire) == 0) return false;
  // The clone is complete before it is published (release store), so a
  // reader that finds it never sees half-copied bytes. The frozen version
  // stays as it is: the commit or checkpoint that holds it writes it.
  auto clone = std::make_shared<MetaBlock>();
  std::memcpy(clone->bytes.data(), block_->bytes.data(), kBlockSize);
  // The version replaced before this one has been out of use since this
  // buffer's last commit started (see freeze()); hand it to reclamation.
  retire_version(std::exchange(retired_, std::exchange(block_, std::move(clone))));
  live_.store(block_.get(), std::memory_order_seq_cst);
  return true;
}

FrozenBlock MetaBuffer::freeze() {
  std::lock_guard lk(mu_);
  // Readers that hold a lock the writer took after get_write_access() are
  // done with the replaced version: the writer's handle has stopped. Lock-
  // free readers are covered by their hazard slots.
  retire_version(std::move(retired_));
  return FrozenBlock(block_);
}

void MetaBuffer::seal(FrozenBlock& fb, uint64_t txid) {
  // Under mu_: a concurrent prepare_write() may be cloning this very
  // version (it is still live); the clone sees it either sealed or not,
  // never half-sealed. Writers never touch it (it is frozen).
  std::lock_guard lk(mu_);
  seal_meta_block(fb.block_->bytes.data(), blocknr_, txid);
}

Result<std::shared_ptr<MetaBuffer>> BufferCache::read(uint64_t blocknr, uint32_t magic) {
  {
    std::lock_guard lk(mu_);
    if (auto it = map_.find(blocknr); it != map_.end()) {
      it->second->referenced_.store(true, std::memory_order_relaxed);
      return it->second;
    }
  }
  if (blocknr >= dev_.block_count()) return err(EUCLEAN);
  auto buf = std::make_shared<MetaBuffer>(blocknr);
  Status s = dev_.read(blocknr, buf->data(), kBlockSize);
  if (!s.ok()) {
    std::fprintf(stderr, "stablefs: metadata block %llu: read failed: %s\n",
                 (unsigned long long)blocknr, std::strerror(s.error()));
    return err(EIO);
  }
  std::string why;
  if (Status v = verify_meta_block(buf->data(), blocknr, magic, &why); !v.ok()) {
    std::fprintf(stderr, "stablefs: metadata block %llu is corrupt: %s\n",
                 (unsigned long long)blocknr, why.c_str());
    return err(EUCLEAN);
  }
  std::vector<std::shared_ptr<MetaBuffer>> evicted;  // freed after unlocking
  std::lock_guard lk(mu_);
  // Another thread may have loaded it meanwhile; keep the first copy, since
  // callers may already be modifying it.
  auto [it, inserted] = map_.emplace(blocknr, buf);
  if (inserted) shrink_locked(&evicted);
  return it->second;
}

std::shared_ptr<MetaBuffer> BufferCache::create(uint64_t blocknr, uint32_t magic,
                                                uint64_t owner) {
  auto buf = std::make_shared<MetaBuffer>(blocknr);
  MetaHeader h;
  h.magic = magic;
  h.blocknr = blocknr;
  h.owner = owner;
  encode_meta_header(buf->data(), h);
  std::vector<std::shared_ptr<MetaBuffer>> evicted;
  std::lock_guard lk(mu_);
  map_[blocknr] = buf;
  shrink_locked(&evicted);
  return buf;
}

void BufferCache::forget(uint64_t blocknr) {
  std::lock_guard lk(mu_);
  map_.erase(blocknr);
}

// Why evicting is safe: under mu_, use_count() == 1 means the map holds
// the only reference and nobody can take another before we let go (every
// lookup goes through mu_), so no transaction lists the buffer and no
// reader is using its bytes. home_is_current() then says the journal has
// nothing left to write for the live version: it was read from home, or
// its last committed copy was written home by a checkpoint (which keeps
// only the newest committed copy of each block). A later read() of the
// block therefore finds exactly these bytes on the device.
void BufferCache::shrink_locked(std::vector<std::shared_ptr<MetaBuffer>>* out) {
  if (capacity_ == 0 || map_.size() <= shrink_at_) return;
  const size_t target = capacity_ - capacity_ / 8;
  for (int pass = 0; pass < 2 && map_.size() > target; pass++) {
    for (auto it = map_.begin(); it != map_.end() && map_.size() > target;) {
      MetaBuffer& b = *it->second;
      if (it->second.use_count() != 1 || !b.home_is_current()) {
        ++it;
      } else if (b.referenced_.exchange(false, std::memory_order_relaxed)) {
        ++it;  // second chance
      } else {
        out->push_back(std::move(it->second));
        it = map_.erase(it);
      }
    }
  }
  evictions_.fetch_add(out->size(), std::memory_order_relaxed);
  shrink_at_ = std::max(capacity_ + capacity_ / 8, map_.size() + capacity_ / 8);
}

}  // namespace stablefs
