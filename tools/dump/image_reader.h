// Read-only access to a stablefs image for stablefs-dump: the superblock
// copies, the journal's state, and inodes, directories, extent maps and
// checksums by number, each read and verified on demand.
//
// It sees what a mount would see: the journal is replayed into memory (an
// OverlayDevice, as fsck -n does), never onto the image. The image is opened
// read-only and without the exclusive lock, so a mounted image can be read
// too; then it shows what the daemon has written so far, which may be
// behind its memory (mounted() says so).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/base/format.h"
#include "core/base/result.h"
#include "core/directory.h"
#include "core/extent_map.h"
#include "core/io/block_device.h"
#include "core/io/overlay_device.h"
#include "journal/buffer.h"
#include "journal/journal.h"
#include "tools/superblock_copies.h"

namespace stablefs {

// The journal as found at open, and what replaying it (in memory) did.
struct JournalState {
  JournalPosition tail;    // from the superblock
  ReplayResult replay;     // transactions and blocks replayed, new head, why the scan stopped
};

class ImageReader {
 public:
  // EUCLEAN with *why when neither superblock copy is valid; open errors
  // (ENOENT, EACCES, ENOTBLK) with *why naming the path.
  static Result<std::unique_ptr<ImageReader>> open(const std::string& path, std::string* why);

  const Superblock& superblock() const { return copies_.sb; }
  // Both copies as found, before any replay.
  const SuperblockCopies& copies() const { return copies_; }
  const JournalState& journal() const { return journal_; }
  bool mounted() const { return mounted_; }

  // EINVAL for a number outside 1..inode_count; EUCLEAN when its inode
  // table block fails verification. A free slot has mode 0.
  Result<DiskInode> inode(uint64_t ino, std::string* why);
  // Whether the inode bitmap marks ino in use.
  Result<bool> inode_in_use(uint64_t ino, std::string* why);
  // The file's extents (ENODATA for inline data: there is no map).
  Result<std::unique_ptr<ExtentMap>> extent_map(uint64_t ino, const DiskInode& d,
                                                std::string* why);
  // ENOTDIR unless d is a directory.
  Result<std::unique_ptr<Directory>> directory(uint64_t ino, const DiskInode& d,
                                               std::string* why);
  // The checksum recorded for a block, and the checksum of what it holds.
  Result<uint64_t> recorded_checksum(uint64_t block, std::string* why);
  Result<uint64_t> actual_checksum(uint64_t block, std::string* why);
  // The inode of an absolute path, walked from the root (ENOENT, ENOTDIR).
  Result<uint64_t> resolve(const std::string& path, std::string* why);

 private:
  explicit ImageReader(std::unique_ptr<BlockDevice> dev)
      : dev_(std::move(dev)), overlay_(*dev_), cache_(overlay_) {}
  Status load(const std::string& path, std::string* why);

  // Order matters: the overlay reads through dev_, the cache through the overlay.
  std::unique_ptr<BlockDevice> dev_;
  OverlayDevice overlay_;
  BufferCache cache_;
  SuperblockCopies copies_;
  JournalState journal_;
  bool mounted_ = false;
};

}  // namespace stablefs
