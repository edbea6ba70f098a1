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

// Writeback errors of one file, as the kernel's errseq_t: every open file
// description sees an error that happened since it last checked, once,
// whichever descriptor checks first. A file opened after an error nobody
// has seen yet sees it too, so an error with no descriptor open at the
// time is not lost. Guarded by Inode::mu.
struct WriteErrors {
  int error = 0;       // the latest error
  uint64_t seq = 0;    // bumped by each error
  bool seen = true;    // someone has been told about `seq`
  // Another writeback failed.
  void record(int e) {
    error = e;
    seq++;
    seen = false;
  }
  // Where a new file description starts.
  uint64_t sample() const { return seen ? seq : seq - 1; }
  // The error a description at `*cursor` has not seen (0 if none), and
  // moves it up to date.
  int check(uint64_t* cursor) {
    if (*cursor == seq) return 0;
    *cursor = seq;
    seen = true;
    return error;
  }
};

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
  // The size the stored record holds (ext4's i_disksize), at most
  // disk.size. write() moves disk.size at once; the stored size of a
  // regular file follows only over data that writeback has mapped (in the
  // same handle), so no store can commit a size over blocks never written
  // (they would read as zeros nobody wrote). Truncate and fallocate store
  // their size at once (MountedFs::size_to_store).
  uint64_t stored_size = 0;
  bool attrs_dirty = false;               // `disk` differs from the journalled copy
  std::unique_ptr<ExtentMap> map;         // loaded on first use
  std::unique_ptr<Directory> dir;         // directories: loaded on first use
  std::unique_ptr<std::map<std::string, std::string>> xattrs;  // loaded on first use
  uint64_t lookups = 0;                   // kernel references (FUSE lookup count)
  WriteErrors write_errors;               // writeback failures, errseq-style
  uint64_t write_error_cursor = 0;        // for flush/fsync callers without an open file
  bool freed = false;                     // slot released; the object is stale
  // Made by O_TMPFILE without O_EXCL: link() may give it its first name
  // although its link count is 0 (the VFS's I_LINKABLE).
  bool linkable = false;

  bool is_dir() const { return (disk.mode & 0170000) == 0040000; }
  bool is_reg() const { return (disk.mode & 0170000) == 0100000; }
  bool is_lnk() const { return (disk.mode & 0170000) == 0120000; }
};

}  // namespace stablefs
