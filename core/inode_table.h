// The inode table: fixed slots of 256 bytes, 15 per metadata block. An
// inode's number is its slot + 1 and never changes; the generation number
// (bumped on every reuse of a slot) tells an old handle from a new file.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>

#include "core/base/format.h"
#include "core/base/result.h"
#include "journal/buffer.h"
#include "journal/journal.h"

namespace stablefs {

class InodeTable {
 public:
  InodeTable(BufferCache& cache, const Superblock& sb)
      : cache_(cache), sb_(sb), hwm_(sb.inode_hwm) {}

  bool valid(uint64_t ino) const { return ino >= 1 && ino <= sb_.inode_count; }
  // An inode above the high-water mark is free (a zero inode) and its
  // table block is never read: it may never have been written.
  Result<DiskInode> read(uint64_t ino);
  // Called once a raised mark is durable (core/lazy_init.h).
  void set_high_water_mark(uint64_t inode_hwm) { hwm_.store(inode_hwm, std::memory_order_release); }
  // Encodes the inode into its table block inside the handle's transaction.
  Status write(Handle& h, uint64_t ino, const DiskInode& inode);

 private:
  BufferCache& cache_;
  const Superblock& sb_;
  std::atomic<uint64_t> hwm_;
  // Striped locks over table blocks: two inodes sharing a block are encoded
  // one at a time. Leaf locks, taken inside a handle.
  std::array<std::mutex, 64> stripes_;
};

}  // namespace stablefs
