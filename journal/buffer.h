// Metadata buffers: the in-memory copy of one metadata block, and the cache
// that hands them out. The journal is the only writer of metadata to the
// device; everyone else modifies a buffer's bytes only inside a journal
// handle, between get_write_access() and dirty_metadata().
//
// Copy-on-write versions (JBD2's frozen/shadow buffers). A MetaBuffer's
// bytes live in a refcounted MetaBlock, its *live* version. At commit the
// journal takes a FrozenBlock reference to the live version of every dirty
// buffer (no copy) and writes exactly those bytes, first to the log and
// later home at checkpoint. While the journal holds such a reference the
// version is frozen: get_write_access() then clones it into a new live
// version (a *shadow copy*) and the writer modifies the clone. Buffers that
// are not modified again while the journal still needs their older bytes
// are never copied. See journal.h for the full protocol.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

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

// One version of a metadata block's bytes.
struct MetaBlock {
  AlignedBlock bytes;
  // FrozenBlock references to this version. Incremented only by the commit
  // thread while no handle is open (so never concurrently with a
  // get_write_access() that reads it); decremented with release order
  // whenever the journal lets go, so a writer that reads 0 (acquire) also
  // sees the journal's I/O on these bytes as finished.
  std::atomic<uint32_t> journal_refs{0};
};

// The journal's reference to one frozen version: the commit writes it to
// the log and the checkpoint writes it home. Nobody modifies a frozen
// version except MetaBuffer::seal(), under the buffer's mutex.
class FrozenBlock {
 public:
  FrozenBlock() = default;
  explicit FrozenBlock(std::shared_ptr<MetaBlock> b);
  FrozenBlock(FrozenBlock&& o) noexcept = default;
  FrozenBlock& operator=(FrozenBlock&& o) noexcept;
  FrozenBlock(const FrozenBlock&) = delete;
  FrozenBlock& operator=(const FrozenBlock&) = delete;
  ~FrozenBlock() { release(); }

  explicit operator bool() const { return block_ != nullptr; }
  const uint8_t* data() const { return block_->bytes.data(); }
  void release();

 private:
  friend class MetaBuffer;
  std::shared_ptr<MetaBlock> block_;
};

class MetaBuffer : public std::enable_shared_from_this<MetaBuffer> {
 public:
  explicit MetaBuffer(uint64_t blocknr);
  ~MetaBuffer();
  MetaBuffer(const MetaBuffer&) = delete;
  MetaBuffer& operator=(const MetaBuffer&) = delete;

  uint64_t blocknr() const { return blocknr_; }
  // The live version's bytes. A writer calls these after get_write_access()
  // (which may have installed a new version) and keeps using the pointer
  // only until its handle stops. A lock-free reader gets a valid version:
  // the live one or, if a shadow copy is being installed right now, the one
  // it replaces, at most one change stale. That version stays allocated
  // while it is among the last kHazardSlots versions this thread obtained
  // here (retired_versions.h) and, in any case, until this buffer's next
  // commit starts (enough for readers that hold a lock the writers take
  // after get_write_access()).
  // The header's txid and checksum belong to the journal: the commit seals
  // them in place, so readers should rely on magic, blocknr and owner only.
  uint8_t* data();
  const uint8_t* data() const;
  uint8_t* payload() { return data() + kMetaHeaderSize; }
  const uint8_t* payload() const { return data() + kMetaHeaderSize; }

 private:
  friend class Journal;
  friend class Handle;
  friend class BufferCache;

  // True when the device's home copy holds exactly the live bytes: the
  // journal holds no reference to the live version (not committing, not
  // waiting for checkpoint). The caller must know that no transaction
  // lists this buffer (BufferCache: nobody else holds it).
  bool home_is_current() const {
    return live_.load(std::memory_order_seq_cst)->journal_refs.load(std::memory_order_acquire) == 0;
  }

  // Makes the live version writable: if the journal holds it, clones it
  // into a new live version. True when a shadow copy was made.
  bool prepare_write();
  // The commit's reference to the live version (no copy).
  FrozenBlock freeze();
  // Seals a version frozen from this buffer with (home blocknr, txid).
  void seal(FrozenBlock& fb, uint64_t txid);

  const uint64_t blocknr_;
  // Protects block_ and retired_, and orders seal() against the clone in
  // prepare_write() (both touch the frozen version). A leaf lock: never
  // held with Journal::Impl::mu or any other lock, never across I/O.
  std::mutex mu_;
  std::shared_ptr<MetaBlock> block_;       // the live version (owner)
  std::shared_ptr<MetaBlock> retired_;     // the previous one, for late readers
  // == block_.get(), for lock-free readers; stored seq_cst (hazard protocol).
  std::atomic<MetaBlock*> live_{nullptr};
  // Journal bookkeeping, guarded by the journal's mutex (Journal::Impl::mu).
  // The running transaction that holds this buffer in its metadata list, or
  // 0: makes dirty_metadata() on an already-listed buffer O(1).
  uint64_t dirty_txid_ = 0;
  // Set on every cache hit; eviction gives such a buffer a second chance.
  std::atomic<bool> referenced_{false};
};

// Hands out one MetaBuffer per metadata block. With a capacity, buffers
// nobody holds and whose home copy is current are evicted (second-chance
// order) once the cache outgrows it by an eighth, down to 7/8 of it; a
// later read() loads and verifies the block again. Buffers that someone
// holds (an open transaction, a loaded directory, the allocator's bitmaps)
// or that the journal still has to write home are never evicted, so the
// cache can exceed its capacity by exactly those.
class BufferCache {
 public:
  // capacity_blocks == 0: never evict (fsck, tests).
  explicit BufferCache(BlockDevice& dev, size_t capacity_blocks = 0)
      : dev_(dev), capacity_(capacity_blocks), shrink_at_(capacity_blocks + capacity_blocks / 8) {}

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
  size_t size() const {
    std::lock_guard lk(mu_);
    return map_.size();
  }
  uint64_t evictions() const { return evictions_.load(std::memory_order_relaxed); }

 private:
  // With mu_ held and the cache over its high mark: moves evictable
  // buffers into *out (destroyed by the caller after unlocking).
  void shrink_locked(std::vector<std::shared_ptr<MetaBuffer>>* out);

  BlockDevice& dev_;
  const size_t capacity_;
  mutable std::mutex mu_;  // protects map_ and shrink_at_; leaf lock, never held across I/O
  // Size that triggers the next shrink: raised past what a shrink could not
  // evict, so pinned buffers cost one scan per capacity/8 insertions.
  size_t shrink_at_;
  std::unordered_map<uint64_t, std::shared_ptr<MetaBuffer>> map_;
  std::atomic<uint64_t> evictions_{0};
};

}  // namespace stablefs
