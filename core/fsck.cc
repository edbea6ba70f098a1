// fsck.stablefs: replay, then check every structure against every other.
// Reads the device directly; trusts nothing it reads. Writes only the
// corrections core/fsck.h names, and nothing at all with read_only. A
// problem with a safe fix goes through fixable(): with the repair level
// that allows it, the fix joins a RepairPlan made once the whole check
// is done (core/fsck_repair.h); otherwise it is an error left.
//
// Not checked (each with its reason):
//  - a regular file's size against its extents: blocks past EOF are legal
//    (fallocate KEEP_SIZE leaves unwritten ones there) and so are holes
//    before it (sparse files), so no mapping contradicts a size;
//  - timestamps, owners, permissions and generations: no invariant ties
//    them to anything else;
//  - checksum table entries of free blocks (the engine leaves a freed
//    block's entry as it was; the next write of the block replaces it),
//    and unwritten extents' data (never read: they read as zeros);
//  - the contents of free inode slots and free blocks.
#include "core/fsck.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/base/checksum.h"
#include "core/base/endian.h"
#include "core/base/format.h"
#include "core/directory.h"
#include "core/extent_map.h"
#include "core/fsck_repair.h"
#include "core/io/overlay_device.h"
#include "core/unreplayed_commit.h"
#include "journal/buffer.h"
#include "journal/journal.h"

namespace stablefs {
namespace {

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
  void claim(uint64_t block, uint64_t ino, const char* what);
  void check_inode(uint64_t ino, const DiskInode& d);
  void check_block_count(uint64_t ino, const DiskInode& d, uint64_t mapped);
  void check_xattr_block(uint64_t ino, const DiskInode& d);
  void check_directory(uint64_t ino, const DiskInode& d, const ExtentMap& map);
  void check_entries();
  void check_links();
  void check_orphans();
  void check_block_bitmap();
  void leak_block(uint64_t b);
  void scrub_file(uint64_t ino, const ExtentMap& map);
  void check_symlink(uint64_t ino, const DiskInode& d, const ExtentMap* map);
  Result<uint64_t> recorded_checksum(uint64_t phys);
  bool bit(const std::vector<std::shared_ptr<MetaBuffer>>& bm, uint64_t n) const {
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
  std::vector<uint64_t> owner_;                    // block -> claiming inode (0 free)
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

Status Checker::load_superblock() {
  AlignedBlock a, b;
  SFS_TRY(dev_.read(kSuperblockA, a.data(), kBlockSize));
  SFS_TRY(dev_.read(kSuperblockB, b.data(), kBlockSize));
  std::string wa, wb;
  auto sa = decode_superblock(a.data(), kSuperblockA, dev_.block_count(), &wa);
  auto sbk = decode_superblock(b.data(), kSuperblockB, dev_.block_count(), &wb);
  if (!sa.ok() && !sbk.ok()) {
    if (opts_.report) opts_.report("no valid superblock: primary: " + wa + "; backup: " + wb);
    return err(EUCLEAN);
  }
  sb_ = sa.ok() ? *sa : *sbk;
  if (sa.ok() != sbk.ok()) {
    // One copy torn or damaged, the other valid: what a crash during a
    // superblock update leaves (they are written one at a time, with a
    // flush between). A mount uses the valid copy and rewrites both.
    const std::string& bad = sa.ok() ? wb : wa;
    const char* which = sa.ok() ? "backup" : "primary";
    if (opts_.read_only) {
      not_corrected(std::string(which) + " superblock is invalid (" + bad +
                    "); not rewritten (-n)");
      return Status::Ok();
    }
    AlignedBlock blk;
    uint64_t nr = sa.ok() ? kSuperblockB : kSuperblockA;
    encode_superblock(blk.data(), sb_, nr);
    SFS_TRY(dev_.write(nr, blk.data(), kBlockSize));
    SFS_TRY(dev_.flush());
    corrected(std::string(which) + " superblock was invalid (" + bad +
              "); rewritten from the other copy");
  }
  return Status::Ok();
}

// Write, flush, write, flush, as a mount does: a torn write can damage at
// most one copy.
Status Checker::write_superblocks() {
  sb_.sequence++;
  AlignedBlock blk;
  for (uint64_t nr : {kSuperblockA, kSuperblockB}) {
    encode_superblock(blk.data(), sb_, nr);
    SFS_TRY(dev_.write(nr, blk.data(), kBlockSize));
    SFS_TRY(dev_.flush());
  }
  return Status::Ok();
}

// Replays the journal through dev_ (the image, or with read_only the
// in-memory overlay), then persists the new tail unless read_only.
Status Checker::replay() {
  auto rep = replay_journal(dev_, {sb_.journal_start, sb_.journal_blocks},
                            {sb_.journal_tail, sb_.journal_tail_txid});
  if (!rep.ok()) return Error{rep.error()};
  head_ = rep->head;
  SFS_TRY(check_unreplayed_commit(*rep));
  res_.journal_transactions_replayed = rep->transactions;
  res_.journal_transactions_discarded = rep->discarded;
  if (rep->transactions == 0 && rep->discarded == 0) return Status::Ok();
  std::string what = std::to_string(rep->transactions) + " committed transaction" +
                     (rep->transactions == 1 ? "" : "s") + " (" + std::to_string(rep->blocks) +
                     " metadata blocks)";
  if (rep->discarded)
    what += "; the newest async commit, whose data never reached the disk, is discarded";
  sb_.journal_tail = rep->head.pos;
  sb_.journal_tail_txid = rep->head.txid;
  sb_.incompat &= ~kIncompatAsyncCommit;  // the log is empty now
  if (opts_.read_only) {
    not_corrected("journal: " + what +
                  " to replay; replayed in memory only (-n), so the checks below see them, "
                  "but the image still needs the replay (a mount, or fsck without -n, does it)");
    return Status::Ok();
  }
  // Replay moved the tail; persist it so a mount does not replay again.
  SFS_TRY(write_superblocks());
  corrected("journal: replayed " + what);
  return Status::Ok();
}

// A transaction replay dropped although its commit block is in the log
// (core/unreplayed_commit.h). An error when the commit block verifies and
// commits were ordered (a flush before each commit block: nothing before it
// can have been lost in a crash); otherwise a note.
Status Checker::check_unreplayed_commit(const ReplayResult& rep) {
  auto found = find_unreplayed_commit(dev_, {sb_.journal_start, sb_.journal_blocks}, rep.head,
                                      true, false);
  if (!found.ok()) return Error{found.error()};
  if (!*found) return Status::Ok();
  const UnreplayedCommit& c = **found;
  std::string line = "journal: transaction " + std::to_string(c.txid) +
                     " has a commit block (block " + std::to_string(c.block) +
                     (c.sealed ? "" : ", itself damaged") + ") but replay stopped inside it (" +
                     rep.stop_reason + "): its changes are not replayed";
  if (c.sealed && !(sb_.incompat & kIncompatAsyncCommit))
    problem(line);
  else
    note(line + " (a crash during its async commit, before its fsync returned, leaves this too)");
  return Status::Ok();
}

void Checker::claim(uint64_t block, uint64_t ino, const char* what) {
  if (block < sb_.data_start || block >= sb_.total_blocks) {
    problem("inode " + std::to_string(ino) + ": " + what + " block " + std::to_string(block) +
            " is outside the data area");
    return;
  }
  if (owner_[block] != 0) {
    // Which owner is right is not something fsck can know (e2fsck's pass
    // 1B would clone the block for each); neither claim is freed.
    shared_.insert(block);
    problem("block " + std::to_string(block) + " is claimed by inode " +
            std::to_string(owner_[block]) + " and inode " + std::to_string(ino) + " (" + what +
            ")");
    return;
  }
  owner_[block] = ino;
}

void Checker::scrub_file(uint64_t ino, const ExtentMap& map) {
  AlignedBlock buf;
  for (const auto& [lo, e] : map.extents()) {
    if (e.unwritten) continue;
    for (uint32_t i = 0; i < e.len; i++) {
      uint64_t phys = e.physical + i;
      res_.blocks_scrubbed++;
      auto recorded = recorded_checksum(phys);
      if (!recorded.ok()) continue;  // reported by the table check
      uint64_t expected = *recorded;
      if (!dev_.read(phys, buf.data(), kBlockSize).ok()) {
        problem("inode " + std::to_string(ino) + ": read error on block " + std::to_string(phys));
        continue;
      }
      uint64_t actual = block_checksum(phys, buf.data(), kBlockSize);
      if (actual != expected) {
        res_.checksum_mismatches++;
        char line[256];
        std::snprintf(line, sizeof line,
                      "checksum mismatch: inode %llu offset %llu block %llu: expected %016llx, "
                      "actual %016llx",
                      (unsigned long long)ino,
                      (unsigned long long)(uint64_t(e.logical + i) * kBlockSize),
                      (unsigned long long)phys, (unsigned long long)expected,
                      (unsigned long long)actual);
        problem(line);
      }
    }
  }
}

void Checker::check_inode(uint64_t ino, const DiskInode& d) {
  std::string who = "inode " + std::to_string(ino);
  res_.inodes++;
  if (!inode_bit_unknown(ino) && !bit(ibmp_, ino))
    fixable(who + ": in use but free in the inode bitmap", true,
            [&](RepairPlan& p) { p.inode_bits[ino] = true; });
  uint32_t type = d.mode & S_IFMT;
  if (type != S_IFREG && type != S_IFDIR && type != S_IFLNK && type != S_IFCHR &&
      type != S_IFBLK && type != S_IFIFO && type != S_IFSOCK) {
    // Nothing of it can be trusted or served: its entries go (they then
    // name a free inode) and so do its blocks (then leaked).
    fixable(who + ": invalid file type", false, [&](RepairPlan&) { clear_inode(ino); });
    return;
  }
  mode_[ino] = d.mode;
  nlink_[ino] = d.nlink;
  if (d.xattr_block) check_xattr_block(ino, d);
  if (d.flags & kInodeInlineData) {
    check_block_count(ino, d, 0);
    if (d.size > kInodeRootSize) problem(who + ": inline data larger than the inode");
    else if (type == S_IFLNK) check_symlink(ino, d, nullptr);
    return;
  }
  auto map = ExtentMap::load(cache_, ino, d, sb_.total_blocks);
  if (!map.ok()) {
    unreadable(who + ": extent map is corrupt");
    return;
  }
  for (uint64_t b : (*map)->node_blocks()) claim(b, ino, "extent tree");
  if (d.nlink == 0) {  // maybe an orphan, which a repair frees
    meta_blocks_[ino] = (*map)->node_blocks();
    if (d.xattr_block) meta_blocks_[ino].push_back(d.xattr_block);
  }
  for (const auto& [lo, e] : (*map)->extents())
    for (uint32_t i = 0; i < e.len; i++) claim(e.physical + i, ino, "data");
  res_.data_blocks += (*map)->mapped_blocks();
  check_block_count(ino, d, (*map)->mapped_blocks());
  if (type == S_IFDIR) {
    check_directory(ino, d, **map);
  } else if (opts_.scrub && (type == S_IFREG || type == S_IFLNK)) {
    scrub_file(ino, **map);
  }
  if (type == S_IFLNK) check_symlink(ino, d, map->get());
}

// `blocks` (st_blocks / 8) charges every mapped block, unwritten ones
// included, plus the xattr block. Extent-tree nodes are not charged: the
// engine allocates them through a NodeAllocator that knows no inode.
void Checker::check_block_count(uint64_t ino, const DiskInode& d, uint64_t mapped) {
  uint64_t charged = mapped + (d.xattr_block ? 1 : 0);
  if (d.blocks == charged) return;
  fixable("inode " + std::to_string(ino) + ": block count " + std::to_string(d.blocks) +
              ", but it holds " + std::to_string(charged) + " (" + std::to_string(mapped) +
              " mapped" + (d.xattr_block ? " + 1 xattr block" : "") + ")",
          true, [&](RepairPlan& p) { p.inodes[ino].blocks = charged; });
}

// The xattr block: its own, a valid XATR block, and every record inside
// the payload: `u16 count`, then per record `u8 name_len` (not 0) ·
// `u16 value_len` · name · value. Names are unique and in a namespace the
// engine serves (user., trusted., security.).
void Checker::check_xattr_block(uint64_t ino, const DiskInode& d) {
  std::string who =
      "inode " + std::to_string(ino) + ": xattr block " + std::to_string(d.xattr_block);
  claim(d.xattr_block, ino, "xattr");
  if (d.xattr_block < sb_.data_start || d.xattr_block >= sb_.total_blocks) return;  // claimed
  AlignedBlock b;
  std::string why;
  if (!dev_.read(d.xattr_block, b.data(), kBlockSize).ok()) {
    problem(who + ": read error");
    return;
  }
  if (!verify_meta_block(b.data(), d.xattr_block, kMagicXattr, &why).ok()) {
    problem(who + ": " + why);
    return;
  }
  if (uint64_t owner = decode_meta_header(b.data()).owner; owner != ino) {
    problem(who + " belongs to inode " + std::to_string(owner));
    return;
  }
  Decoder dec(b.data() + kMetaHeaderSize, kMetaPayload);
  const uint16_t count = dec.u16();
  std::vector<std::string> names;
  for (uint16_t i = 0; i < count; i++) {
    std::string at = who + ": record " + std::to_string(i) + " of " + std::to_string(count);
    uint8_t nl = dec.u8();
    uint16_t vl = dec.u16();
    std::string name(nl, '\0');
    if (dec.overflow() || !dec.bytes(name.data(), nl) || vl > dec.remaining()) {
      problem(at + " runs past the end of the block");
      return;
    }
    dec.skip(vl);
    if (nl == 0) {
      problem(at + " has an empty name");
      return;
    }
    bool known = false;
    for (std::string_view p : {"user.", "trusted.", "security."})
      known |= name.size() > p.size() && name.compare(0, p.size(), p) == 0;
    if (!known || name.find('\0') != std::string::npos)
      problem(at + ": invalid name");
    names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());
  if (std::adjacent_find(names.begin(), names.end()) != names.end())
    problem(who + ": a name appears twice");
}

void Checker::check_directory(uint64_t ino, const DiskInode& d, const ExtentMap& map) {
  std::string who = "inode " + std::to_string(ino);
  res_.directories++;
  dotdot_[ino] = d.rdev ? d.rdev : kRootIno;
  std::vector<std::shared_ptr<MetaBuffer>> blocks;
  uint64_t nblocks = d.size / kBlockSize;
  if (d.size % kBlockSize) problem(who + ": directory size is not a whole number of blocks");
  for (uint64_t i = 0; i < nblocks; i++) {
    auto e = map.find(uint32_t(i));
    if (!e) {
      unreadable(who + ": directory block " + std::to_string(i) + " is not mapped");
      return;
    }
    auto buf = cache_.read(e->physical + (i - e->logical), kMagicDirectory);
    if (!buf.ok()) {
      unreadable(who + ": directory block " + std::to_string(e->physical + (i - e->logical)) +
                 " is corrupt");
      return;
    }
    blocks.push_back(*buf);
  }
  auto dir = Directory::load(ino, std::move(blocks));
  if (!dir.ok()) {
    unreadable(who + ": directory entries are corrupt");
    return;
  }
  (*dir)->list(0, [&](const DirEntry& e, uint64_t) {
    entries_.emplace_back(ino, e);
    return true;
  });
  plan_.dirs[ino] = std::move(*dir);
}

Result<uint64_t> Checker::recorded_checksum(uint64_t phys) {
  auto buf = cache_.read(sb_.csum_table_start + phys / kChecksumsPerBlock, kMagicChecksumTable);
  if (!buf.ok()) return Error{buf.error()};
  return get_le64((*buf)->payload() + (phys % kChecksumsPerBlock) * 8);
}

// A symlink's size must match a stored target: `size` bytes, none of them
// NUL, inline or in a mapped block that verifies. (A committed symlink
// with a missing target is what a non-atomic symlink once left behind.)
// Checked without --scrub: it is one block per long symlink.
void Checker::check_symlink(uint64_t ino, const DiskInode& d, const ExtentMap* map) {
  std::string who = "inode " + std::to_string(ino) + ": symlink";
  if (d.size == 0 || d.size >= kBlockSize) {
    problem(who + " target size " + std::to_string(d.size) + " is invalid");
    return;
  }
  auto has_nul = [&](const uint8_t* p) { return std::memchr(p, 0, d.size) != nullptr; };
  if (map == nullptr) {
    if (has_nul(d.root.data())) problem(who + " target is shorter than its size");
    return;
  }
  auto e = map->find(0);
  if (!e || e->unwritten) {
    problem(who + " of " + std::to_string(d.size) + " bytes has no target block");
    return;
  }
  uint64_t phys = e->physical - e->logical;
  AlignedBlock buf;
  auto expected = recorded_checksum(phys);
  if (!expected.ok()) return;  // reported by the table check
  if (!dev_.read(phys, buf.data(), kBlockSize).ok()) {
    problem(who + ": read error on target block " + std::to_string(phys));
    return;
  }
  if (block_checksum(phys, buf.data(), kBlockSize) != *expected) {
    if (!opts_.scrub) res_.checksum_mismatches++;  // scrub counted it already
    problem(who + " target block " + std::to_string(phys) + " fails its checksum");
    return;
  }
  if (has_nul(buf.data())) problem(who + " target is shorter than its size");
}

// Every entry against the inode it names, now that every inode is known:
// an entry that names no live inode goes (-y); the rest count as links,
// and their d_type must be the inode's (the S_IFMT bits shifted down,
// <dirent.h>).
void Checker::check_entries() {
  for (auto& [dir, e] : entries_) {
    std::string at = "inode " + std::to_string(dir) + ": entry '" + e.name + "'";
    if (in_unreadable_table(e.ino)) {  // its table block is reported
      refs_[e.ino]++;
      continue;
    }
    auto m = mode_.find(e.ino);
    if (m == mode_.end() || e.ino == kRootIno) {
      std::string why = e.ino == kRootIno ? "names the root directory"
                        : e.ino == 0 || e.ino > sb_.inode_count
                            ? "points to invalid inode " + std::to_string(e.ino)
                            : "points to free inode " + std::to_string(e.ino);
      if (!fixable_if_complete(at + " " + why, false, [&](RepairPlan& p) {
            p.entries.push_back({dir, e.name, true, 0, 0});
          }))
        refs_[e.ino]++;  // left: it still counts (and root's count says so)
      continue;
    }
    const uint8_t type = uint8_t((m->second & S_IFMT) >> 12);
    if (e.type != type)
      fixable(at + " gives inode " + std::to_string(e.ino) + " type " + std::to_string(e.type) +
                  ", its mode says " + std::to_string(type),
              true, [&](RepairPlan& p) { p.entries.push_back({dir, e.name, false, e.ino, type}); });
    refs_[e.ino]++;
    if (type == kTypeDir) {
      subdirs_[dir]++;
      parent_[e.ino] = dir;
    }
  }
}

void Checker::check_links() {
  check_entries();
  for (auto& [ino, nlink] : nlink_) {
    std::string who = "inode " + std::to_string(ino);
    bool dir = (mode_[ino] & S_IFMT) == S_IFDIR;
    uint32_t expect = dir ? 2 + subdirs_[ino] : refs_[ino];
    if (ino == kRootIno) {
      // An entry naming it is check_entries' to report.
    } else if (refs_[ino] == 0) {
      if (nlink == 0) {
        orphans_.push_back(ino);
      } else {
        // e2fsck would link it into lost+found, which stablefs has not.
        problem(who + ": in use but not in any directory");
      }
      continue;
    }
    if (dir && ino != kRootIno && refs_[ino] != 1)
      problem(who + ": directory has " + std::to_string(refs_[ino]) + " names");
    if (nlink != expect)
      fixable_if_complete(
          who + ": link count " + std::to_string(nlink) + ", should be " + std::to_string(expect),
          true, [&](RepairPlan& p) { p.inodes[ino].nlink = expect; });
    if (dir && ino != kRootIno && parent_.count(ino) && dotdot_[ino] != parent_[ino])
      fixable_if_complete(who + ": '..' names " + std::to_string(dotdot_[ino]) +
                              " but it lives in " + std::to_string(parent_[ino]),
                          true, [&](RepairPlan& p) { p.inodes[ino].parent = parent_[ino]; });
  }
}

void Checker::clear_inode(uint64_t ino) {
  cleared_.insert(ino);
  auto& fix = plan_.inodes[ino];
  fix.clear = true;
  if (auto m = meta_blocks_.find(ino); m != meta_blocks_.end()) fix.meta_blocks = m->second;
  plan_.inode_bits[ino] = false;
}

// An inode with link count 0 in no directory was unlinked while open. A
// crash leaves it behind and the next read-write mount frees it (it frees
// orphans only after an unclean shutdown); a clean unmount frees it
// itself, so in a cleanly unmounted filesystem it is a leak nothing frees.
void Checker::check_orphans() {
  res_.orphans = orphans_.size();
  if (orphans_.empty()) return;
  if (sb_.state != kStateClean) {
    note(std::to_string(orphans_.size()) +
         " orphaned inodes (link count 0, unlinked while open when the filesystem went "
         "down): the next read-write mount frees them");
    return;
  }
  std::sort(orphans_.begin(), orphans_.end());
  for (uint64_t ino : orphans_)
    fixable_if_complete(
        "inode " + std::to_string(ino) +
            ": link count 0 and in no directory in a cleanly unmounted filesystem: nothing "
            "will free it",
        true, [&](RepairPlan&) { clear_inode(ino); });
}

// The bitmap against what is reachable: owned by an inode the repairs do
// not free, or claimed twice (kept until someone decides).
void Checker::check_block_bitmap() {
  std::vector<uint64_t> unmarked, leaked;
  for (uint64_t b = sb_.data_start; b < sb_.total_blocks; b++) {
    if (block_bit_unknown(b)) continue;
    bool used = (owner_[b] && !cleared_.count(owner_[b])) || shared_.count(b);
    if (used && !bit(bbmp_, b)) unmarked.push_back(b);
    if (!used && bit(bbmp_, b)) leaked.push_back(b);
  }
  if (!unmarked.empty()) {
    std::string some;
    for (size_t i = 0; i < unmarked.size() && i < 10; i++)
      some += (i ? ", " : "") + std::to_string(unmarked[i]) + " (inode " +
              std::to_string(owner_[unmarked[i]]) + ")";
    fixable(std::to_string(unmarked.size()) + " used blocks are free in the bitmap: " + some +
                (unmarked.size() > 10 ? ", ..." : ""),
            true, [&](RepairPlan& p) {
              for (uint64_t b : unmarked) p.block_bits[b] = true;
            });
  }
  if (!leaked.empty())
    fixable_if_complete(
        std::to_string(leaked.size()) + " blocks are marked in use but belong to no inode", true,
        [&](RepairPlan&) {
          for (uint64_t b : leaked) leak_block(b);
        });
  for (uint64_t b = 0; b < sb_.data_start; b++)
    if (!block_bit_unknown(b) && !bit(bbmp_, b)) {
      fixable("metadata block " + std::to_string(b) + " is free in the bitmap", true,
              [&](RepairPlan& p) {
                for (uint64_t m = 0; m < sb_.data_start; m++) p.block_bits[m] = true;
              });
      break;
    }
}

// A block nothing reaches is freed, and its checksum entry zeroed: the
// stale checksum of bytes nobody owns is not kept as if it meant something.
void Checker::leak_block(uint64_t b) {
  plan_.block_bits[b] = false;
  if (auto c = recorded_checksum(b); c.ok() && *c != 0) plan_.checksums_to_zero.push_back(b);
}

// A bitmap block that fails verification stands in as zeros (a buffer of
// the cache's own, which a rebuild fills and the journal writes whole).
void Checker::load_bitmaps() {
  auto load = [&](uint64_t start, uint64_t count, uint32_t magic, auto& out) {
    for (uint64_t nr = start; nr < start + count; nr++) {
      auto b = cache_.read(nr, magic);
      if (!b.ok()) corrupt_bitmaps_.insert(nr);
      out.push_back(b.ok() ? *b : cache_.create(nr, magic, 0));
    }
  };
  load(sb_.inode_bitmap_start, sb_.inode_bitmap_blocks, kMagicInodeBitmap, ibmp_);
  load(sb_.block_bitmap_start, sb_.block_bitmap_blocks, kMagicBlockBitmap, bbmp_);
}

// A bitmap is what the rest of the filesystem says is in use, so a
// corrupt block of one is rebuilt from that, once all of it was read: the
// inode bitmap from the slots in use (bit 0 is reserved, as mkfs sets it),
// the block bitmap from the metadata region and every block an inode
// reaches. The repairs' frees are already counted out (cleared_).
void Checker::rebuild_bitmaps() {
  for (uint64_t nr : corrupt_bitmaps_) {
    const bool inodes = nr < sb_.block_bitmap_start;
    const uint64_t first =
        (nr - (inodes ? sb_.inode_bitmap_start : sb_.block_bitmap_start)) * kBitsPerBitmapBlock;
    const uint64_t end =
        std::min(first + kBitsPerBitmapBlock, inodes ? sb_.inode_count + 1 : sb_.total_blocks);
    fixable_if_complete(std::string(inodes ? "inode" : "block") + " bitmap block " +
                            std::to_string(nr) + " is corrupt (it can be rebuilt from the " +
                            (inodes ? "inodes" : "blocks") + " in use)",
                        true, [&](RepairPlan& p) {
                          p.rebuilt_bitmaps.insert(nr);
                          for (uint64_t n = first; n < end; n++) {
                            bool used = inodes
                                            ? n == 0 || (slots_used_.count(n) && !cleared_.count(n))
                                            : n < sb_.data_start ||
                                                  (owner_[n] && !cleared_.count(owner_[n])) ||
                                                  shared_.count(n);
                            if (used) (inodes ? p.inode_bits : p.block_bits)[n] = true;
                          }
                        });
  }
}

Status Checker::check_checksum_table_blocks() {
  for (uint64_t i = 0; i < sb_.csum_table_blocks; i++) {
    AlignedBlock b;
    std::string why;
    uint64_t nr = sb_.csum_table_start + i;
    SFS_TRY(dev_.read(nr, b.data(), kBlockSize));
    if (!verify_meta_block(b.data(), nr, kMagicChecksumTable, &why).ok())
      problem("checksum table block " + std::to_string(nr) + ": " + why);
  }
  return Status::Ok();
}

Result<FsckResult> Checker::run() {
  SFS_TRY(load_superblock());
  SFS_TRY(replay());
  load_bitmaps();
  SFS_TRY(check_checksum_table_blocks());
  owner_.assign(sb_.total_blocks, 0);
  bool root_seen = false;
  for (uint64_t blk = 0; blk < sb_.inode_table_blocks; blk++) {
    if (opts_.progress) opts_.progress(blk, sb_.inode_table_blocks);
    uint64_t nr = sb_.inode_table_start + blk;
    auto buf = cache_.read(nr, kMagicInodeTable);
    if (!buf.ok()) {
      unreadable("inode table block " + std::to_string(nr) + " is corrupt");
      unreadable_tables_.insert(blk);
      continue;
    }
    for (uint32_t slot = 0; slot < kInodesPerBlock; slot++) {
      uint64_t ino = blk * kInodesPerBlock + slot + 1;
      DiskInode d = decode_inode((*buf)->payload() + slot * kInodeSize);
      if (d.mode == 0) {
        if (!inode_bit_unknown(ino) && bit(ibmp_, ino))
          fixable("inode " + std::to_string(ino) + ": free but marked in use", true,
                  [&](RepairPlan& p) { p.inode_bits[ino] = false; });
        continue;
      }
      slots_used_.insert(ino);
      if (ino == kRootIno) root_seen = (d.mode & S_IFMT) == S_IFDIR;
      check_inode(ino, d);
    }
  }
  if (!root_seen) problem("root directory is missing");
  check_links();
  check_orphans();
  rebuild_bitmaps();
  check_block_bitmap();
  if (opts_.progress) opts_.progress(sb_.inode_table_blocks, sb_.inode_table_blocks);
  SFS_TRY(repair());
  return res_;
}

Status Checker::repair() {
  if (fixing_.empty()) return Status::Ok();
  Status s = apply_repairs(dev_, cache_, sb_, head_,
                           [this](JournalPosition t) {
                             sb_.journal_tail = t.pos;
                             sb_.journal_tail_txid = t.txid;
                             return write_superblocks();
                           },
                           plan_);
  if (!s.ok()) {
    for (const auto& line : fixing_)
      problem(line + " (not repaired: " + std::strerror(s.error()) + ")");
    return s;
  }
  for (const auto& line : fixing_) {
    res_.repairs++;
    corrected(line + ": repaired");
  }
  return Status::Ok();
}

}  // namespace

Result<FsckResult> check_filesystem(BlockDevice& dev, const FsckOptions& opts) {
  if (opts.read_only) {
    // Replay and everything else write here; the image never sees it.
    OverlayDevice overlay(dev);
    Checker c(overlay, opts);
    return c.run();
  }
  Checker c(dev, opts);
  return c.run();
}

}  // namespace stablefs
