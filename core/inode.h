// The in-memory inode: the decoded on-disk record plus what the engine
// keeps about it while mounted (kernel references, loaded maps, errors).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>

#include "core/base/format.h"
#include "core/directory.h"
#include "core/extent_map.h"

namespace stablefs {

struct Inode {
  explicit Inode(uint64_t n) : ino(n) {}
  Inode(const Inode&) = delete;
  Inode& operator=(const Inode&) = delete;

  const uint64_t ino;

  // VFS-level lock, taken BEFORE a journal handle starts: shared by
  // write(), exclusive by truncate, namespace changes of a directory and
  // anything else that must not interleave with them.
  // Lock order: rename_mu -> parent dirs' op (by ino) -> child op -> handle -> mu.
  std::shared_mutex op;

  // Guards every field below. Taken after a handle starts (never wait for
  // a handle while holding it); two inodes' mu are taken in ino order.
  std::mutex mu;
  DiskInode disk;
  bool attrs_dirty = false;               // `disk` differs from the journalled copy
  std::unique_ptr<ExtentMap> map;         // loaded on first use
  std::unique_ptr<Directory> dir;         // directories: loaded on first use
  std::unique_ptr<std::map<std::string, std::string>> xattrs;  // loaded on first use
  uint64_t lookups = 0;                   // kernel references (FUSE lookup count)
  int write_error = 0;                    // reported by the next flush/fsync
  bool freed = false;                     // slot released; the object is stale

  bool is_dir() const { return (disk.mode & 0170000) == 0040000; }
  bool is_reg() const { return (disk.mode & 0170000) == 0100000; }
  bool is_lnk() const { return (disk.mode & 0170000) == 0120000; }
};

}  // namespace stablefs
