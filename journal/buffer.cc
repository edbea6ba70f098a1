#include "journal/buffer.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace stablefs {

AlignedBlock::AlignedBlock()
    : p_(static_cast<uint8_t*>(std::aligned_alloc(kBlockSize, kBlockSize))) {
  if (!p_) std::abort();  // metadata buffers are not optional; see BufferCache
  std::memset(p_.get(), 0, kBlockSize);
}

void AlignedBlock::Free::operator()(uint8_t* p) const { std::free(p); }

Result<std::shared_ptr<MetaBuffer>> BufferCache::read(uint64_t blocknr, uint32_t magic) {
  {
    std::lock_guard lk(mu_);
    if (auto it = map_.find(blocknr); it != map_.end()) return it->second;
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
  std::lock_guard lk(mu_);
  // Another thread may have loaded it meanwhile; keep the first copy, since
  // callers may already be modifying it.
  auto [it, inserted] = map_.emplace(blocknr, buf);
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
  std::lock_guard lk(mu_);
  map_[blocknr] = buf;
  return buf;
}

void BufferCache::forget(uint64_t blocknr) {
  std::lock_guard lk(mu_);
  map_.erase(blocknr);
}

}  // namespace stablefs
