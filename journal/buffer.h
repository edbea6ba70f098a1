// Metadata buffers: the in-memory copy of one metadata block, and the cache
// that hands them out. The journal is the only writer of metadata to the
// device; everyone else modifies a buffer's bytes only inside a journal
// handle, between get_write_access() and dirty_metadata().
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "core/base/format.h"
#include "core/base/result.h"
#include "core/io/block_device.h"

namespace stablefs {

class Transaction;

// One kBlockSize, kBlockSize-aligned heap block (usable with O_DIRECT).
class AlignedBlock {
 public:
  AlignedBlock();
  uint8_t* data() { return p_.get(); }
  const uint8_t* data() const { return p_.get(); }

 private:
  struct Free {
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t, Free> p_;
};

class MetaBuffer : public std::enable_shared_from_this<MetaBuffer> {
 public:
  explicit MetaBuffer(uint64_t blocknr) : blocknr_(blocknr) {}
  MetaBuffer(const MetaBuffer&) = delete;
  MetaBuffer& operator=(const MetaBuffer&) = delete;

  uint64_t blocknr() const { return blocknr_; }
  uint8_t* data() { return block_.data(); }
  const uint8_t* data() const { return block_.data(); }
  uint8_t* payload() { return block_.data() + kMetaHeaderSize; }
  const uint8_t* payload() const { return block_.data() + kMetaHeaderSize; }

 private:
  friend class Journal;
  const uint64_t blocknr_;
  AlignedBlock block_;
  // Journal bookkeeping, guarded by the journal's mutex (Journal::Impl::mu).
  // The running transaction that holds this buffer in its metadata list, or
  // 0: makes dirty_metadata() on an already-listed buffer O(1).
  uint64_t dirty_txid_ = 0;
};

// Hands out one MetaBuffer per metadata block. Buffers stay cached for the
// life of the mount (metadata lookups stay in memory once loaded).
class BufferCache {
 public:
  explicit BufferCache(BlockDevice& dev) : dev_(dev) {}

  // The buffer for blocknr, read from the device and verified (magic,
  // self-identifying block number, checksum) on first use. EUCLEAN with a
  // logged reason when verification fails, EIO when the read fails.
  Result<std::shared_ptr<MetaBuffer>> read(uint64_t blocknr, uint32_t magic);
  // A buffer for a newly allocated metadata block: zero-filled, with its
  // header's magic and owner set, never read from the device.
  std::shared_ptr<MetaBuffer> create(uint64_t blocknr, uint32_t magic, uint64_t owner);
  // Drops a freed block so a later create() starts from scratch.
  void forget(uint64_t blocknr);

  BlockDevice& device() { return dev_; }

 private:
  BlockDevice& dev_;
  std::mutex mu_;  // protects map_; leaf lock, never held across I/O
  std::unordered_map<uint64_t, std::shared_ptr<MetaBuffer>> map_;
};

}  // namespace stablefs
