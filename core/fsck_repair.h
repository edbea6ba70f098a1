// fsck's repairs: what the check decided to change, and the code that
// changes it through the journal.
//
// The check (core/fsck.cc) never writes while it looks: it fills a
// RepairPlan with every fix it wants, and apply_repairs() makes them once
// the whole filesystem has been seen, so each fix is computed from the
// complete picture (a link count from every directory, a bitmap from every
// inode).
//
// Crash safety: every change goes through the journal, exactly as a
// mount's changes do. apply_repairs() opens a Journal on the device at
// the (already replayed, empty) log head, makes each fix in its own
// handle, and shuts the journal down: final commit, checkpoint to the
// home locations, new tail in both superblocks. A crash before a commit
// block is durable leaves the image as it was; a crash after it is
// replayed by the next mount or fsck. The fixes are made in an order in
// which every committed prefix is no worse than the start, so a crash
// between two commits leaves at most what a rerun fixes: directory entries
// are removed before the inodes they named are touched, inodes are cleared
// before the bitmaps free their blocks, and blocks are marked used before
// leaked ones are freed. Nothing is ever freed that something still in
// the filesystem refers to.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/base/format.h"
#include "core/base/result.h"
#include "core/directory.h"
#include "journal/buffer.h"
#include "journal/journal.h"

namespace stablefs {

struct RepairPlan {
  // A directory entry to drop (it names a free, invalid or cleared inode)
  // or to give the d_type its inode's mode says.
  struct EntryFix {
    uint64_t dir = 0;
    std::string name;
    bool remove = false;
    uint64_t ino = 0;  // !remove: the entry's inode, kept
    uint8_t type = 0;  // !remove: the type to record
  };
  // Fields of one inode to rewrite; unset ones stay as they are.
  struct InodeFix {
    bool clear = false;                 // free the slot (orphan, invalid type)
    std::vector<uint64_t> meta_blocks;  // clear: its xattr and extent-tree blocks, revoked
    std::optional<uint32_t> nlink;
    std::optional<uint64_t> blocks;
    std::optional<uint64_t> parent;  // directories: the inode's `..`
  };

  std::vector<EntryFix> entries;
  std::map<uint64_t, InodeFix> inodes;
  // Bitmap bits to set (true) or clear (false).
  std::map<uint64_t, bool> inode_bits;
  std::map<uint64_t, bool> block_bits;
  // Bitmap blocks that failed verification, written whole from the bits
  // above (which hold every bit they set).
  std::set<uint64_t> rebuilt_bitmaps;
  // Checksum-table entries to zero: blocks freed above that nothing maps.
  std::vector<uint64_t> checksums_to_zero;
  // The directories the check loaded, by inode (EntryFix edits them).
  std::map<uint64_t, std::unique_ptr<Directory>> dirs;

  bool empty() const {
    return entries.empty() && inodes.empty() && inode_bits.empty() && block_bits.empty() &&
           checksums_to_zero.empty() && rebuilt_bitmaps.empty();
  }
};

// Makes every fix in `plan` through a journal on `dev` whose log is empty
// and starts at `head`. `persist_tail` records a new log tail in both
// superblocks (the caller owns them). The buffers of `cache` are the ones
// the check read (and `plan.dirs` holds).
Status apply_repairs(BlockDevice& dev, BufferCache& cache, const Superblock& sb,
                     JournalPosition head, std::function<Status(JournalPosition)> persist_tail,
                     RepairPlan& plan);

}  // namespace stablefs
