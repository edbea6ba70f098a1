// The checker behind check_filesystem (core/fsck.h), shared by the files
// that implement it: core/fsck.cc (superblocks, replay, inodes, extent
// maps, xattrs, symlinks, scrub, the run and its repairs),
// core/fsck_names.cc (directories, entries, link counts, orphans) and
// core/fsck_bitmaps.cc (the bitmaps against what is in use, and their
// rebuild). Internal to those files.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/directory.h"
#include "core/extent_map.h"
#include "core/fsck.h"
#include "core/fsck_repair.h"
#include "core/xattr_format.h"
#include "journal/buffer.h"
#include "journal/journal.h"

namespace stablefs::fsck_internal {

class Checker {
 public:
  Checker(BlockDevice& dev, const FsckOptions& opts) : dev_(dev), opts_(opts), cache_(dev) {}

  Result<FsckResult> run();

 private:
  // An inconsistency, left as it is.
  void problem(const std::string& line) {
    res_.errors++;
    say(line);
  }
  // A correction written to the device.
  void corrected(const std::string& line) {
    res_.corrections++;
    say(line);
  }
  // A correction read_only kept from the device.
  void not_corrected(const std::string& line) {
    res_.corrections_skipped++;
    say(line);
  }
  // An inconsistency with a safe fix: with a repair level that allows it
  // (`preen`: -p may make it unattended), plan(plan_) adds the fix and
  // the line waits for the repairs to be made; otherwise it is a problem.
  template <class Plan>
  bool fixable(const std::string& line, bool preen, Plan plan) {
    const bool allowed = !opts_.read_only && (opts_.repair == FsckRepair::kAll ||
                                              (preen && opts_.repair == FsckRepair::kPreen));
    if (!allowed) {
      problem(line);
      return false;
    }
    plan(plan_);
    fixing_.push_back(line);
    return true;
  }
  // The same, for a fix that is right only if nothing was missed: a link
  // count, a free, an entry dropped. When part of the filesystem could not
  // be read (an inode table block, an extent map, a directory), a name or
  // a block's owner may be in what was not read, so such a fix is left.
  template <class Plan>
  bool fixable_if_complete(const std::string& line, bool preen, Plan plan) {
    if (incomplete_ && !opts_.read_only && opts_.repair != FsckRepair::kNone) {
      problem(line + " (not repaired: part of the filesystem could not be read)");
      return false;
    }
    return fixable(line, preen, plan);
  }
  // Part of the filesystem cannot be read: what needs the whole picture
  // is not repaired.
  void unreadable(const std::string& line) {
    incomplete_ = true;
    problem(line);
  }
  // A bit in a bitmap block that failed verification (read as zeros): not
  // compared, the block is rebuilt whole or left.
  bool inode_bit_unknown(uint64_t ino) const {
    return corrupt_bitmaps_.count(sb_.inode_bitmap_start + ino / kBitsPerBitmapBlock) != 0;
  }
  bool block_bit_unknown(uint64_t b) const {
    return corrupt_bitmaps_.count(sb_.block_bitmap_start + b / kBitsPerBitmapBlock) != 0;
  }
  bool in_unreadable_table(uint64_t ino) const {
    return ino != 0 && unreadable_tables_.count((ino - 1) / kInodesPerBlock);
  }
  // Worth knowing, not wrong.
  void note(const std::string& line) { say("note: " + line); }
  void say(const std::string& line) {
    if (opts_.report) opts_.report(line);
  }
  Status load_superblock();
  Status write_superblocks();
  Status replay();
  Status check_unreplayed_commit(const ReplayResult& rep);
  void load_bitmaps();
  void rebuild_bitmaps();
  Status check_checksum_table_blocks();
  Status repair();
  void clear_inode(uint64_t ino);
  void free_untrusted_inode(uint64_t ino, const std::string& line);
  void claim(uint64_t block, uint64_t ino, const char* what);
  void check_inode(uint64_t ino, const DiskInode& d);
  void check_block_count(uint64_t ino, const DiskInode& d, uint64_t mapped, uint64_t xattr);
  std::vector<uint64_t> check_xattr_block(uint64_t ino, const DiskInode& d);
  std::vector<uint64_t> check_xattr_set(uint64_t ino, const DiskInode& d, const std::string& who,
                                        const uint8_t* index);
  void check_xattr_records(const std::string& who, const DiskInode& d, const uint8_t* p, size_t n,
                           XattrLayout layout);
  void check_flag_bits(const std::string& who, const DiskInode& d);
  void check_acl_xattr(const std::string& at, const DiskInode& d, std::string_view name,
                       std::string_view value);
  void check_directory(uint64_t ino, const DiskInode& d, const ExtentMap& map);
  void check_entries();
  void check_links();
  void check_orphans();
  void check_block_bitmap();
  void check_high_water_marks();
  uint64_t first_clear_metadata_bit() const;
  void leak_block(uint64_t b);
  void scrub_file(uint64_t ino, const ExtentMap& map);
  void check_symlink(uint64_t ino, const DiskInode& d, const ExtentMap* map);
  Result<uint64_t> recorded_checksum(uint64_t phys);
  // Bits in blocks above the high-water marks were never written: free.
  bool bit(const std::vector<std::shared_ptr<MetaBuffer>>& bm, uint64_t n) const {
    if (n / kBitsPerBitmapBlock >= bm.size()) return false;
    const auto& b = bm[n / kBitsPerBitmapBlock];
    uint64_t i = n % kBitsPerBitmapBlock;
    return b->payload()[i / 8] >> (i % 8) & 1;
  }

  BlockDevice& dev_;
  const FsckOptions& opts_;
  BufferCache cache_;
  Superblock sb_;
  JournalPosition head_;  // after replay: where a repair's first transaction goes
  FsckResult res_;
  RepairPlan plan_;
  std::vector<std::string> fixing_;  // the lines of plan_'s fixes
  std::vector<std::shared_ptr<MetaBuffer>> ibmp_, bbmp_;
  // Data block b -> claiming inode (0 free), from data_start up to the
  // block high-water mark: the size of what can be in use, not the device.
  std::vector<uint64_t> owner_;
  uint64_t& owner(uint64_t b) { return owner_[b - sb_.data_start]; }
  std::unordered_set<uint64_t> shared_;            // blocks claimed twice: never freed
  // Every directory entry, as (directory, entry); judged once every inode is known.
  std::vector<std::pair<uint64_t, DirEntry>> entries_;
  std::unordered_map<uint64_t, std::vector<uint64_t>> meta_blocks_;  // unlinked ino -> its
                                                                     // xattr and tree blocks
  std::unordered_set<uint64_t> cleared_;           // inodes the repairs free
  bool incomplete_ = false;                        // something could not be read
  std::unordered_set<uint64_t> unreadable_tables_;  // inode table blocks (index) that fail
  std::set<uint64_t> corrupt_bitmaps_;              // bitmap blocks that fail verification
  std::unordered_set<uint64_t> slots_used_;         // inodes whose mode is not 0
  std::unordered_map<uint64_t, uint32_t> nlink_;   // ino -> nlink on disk
  std::unordered_map<uint64_t, uint32_t> refs_;    // ino -> directory references
  std::unordered_map<uint64_t, uint32_t> subdirs_; // dir ino -> subdirectories
  std::unordered_map<uint64_t, uint64_t> parent_;  // dir ino -> parent from entries
  std::unordered_map<uint64_t, uint64_t> dotdot_;  // dir ino -> parent in inode
  std::unordered_map<uint64_t, uint32_t> mode_;
  std::vector<uint64_t> orphans_;                     // link count 0, in no directory
};

}  // namespace stablefs::fsck_internal
