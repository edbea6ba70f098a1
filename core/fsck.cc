// fsck.stablefs: replay, then check every structure against every other.
// Reads the device directly; trusts nothing it reads. Writes only the two
// corrections core/fsck.h names, and nothing at all with read_only.
//
// Not checked (each with its reason):
//  - a regular file's size against its extents: blocks past EOF are legal
//    (fallocate KEEP_SIZE leaves unwritten ones there) and so are holes
//    before it (sparse files), so no mapping contradicts a size;
//  - timestamps, owners, permissions and generations: no invariant ties
//    them to anything else;
//  - checksum table entries of unmapped blocks, and unwritten extents'
//    data (never read: they read as zeros);
//  - the contents of free inode slots and free blocks.
#include "core/fsck.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <unordered_map>
#include <vector>

#include "core/base/checksum.h"
#include "core/base/endian.h"
#include "core/base/format.h"
#include "core/directory.h"
#include "core/extent_map.h"
#include "core/io/overlay_device.h"
#include "core/posix_acl.h"
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
  // Worth knowing, not wrong.
  void note(const std::string& line) { say("note: " + line); }
  void say(const std::string& line) {
    if (opts_.report) opts_.report(line);
  }
  Status load_superblock();
  Status write_superblocks();
  Status replay();
  bool load_bitmaps();
  Status check_checksum_table_blocks();
  void claim(uint64_t block, uint64_t ino, const char* what);
  void check_inode(uint64_t ino, const DiskInode& d);
  void check_block_count(const std::string& who, const DiskInode& d, uint64_t mapped);
  void check_xattr_block(uint64_t ino, const DiskInode& d);
  void check_flag_bits(const std::string& who, const DiskInode& d);
  void check_acl_xattr(const std::string& at, const DiskInode& d, std::string_view name,
                       std::string_view value);
  void check_directory(uint64_t ino, const DiskInode& d, const ExtentMap& map);
  void check_links();
  void check_orphans();
  void check_block_bitmap();
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
  FsckResult res_;
  std::vector<std::shared_ptr<MetaBuffer>> ibmp_, bbmp_;
  std::vector<uint64_t> owner_;                    // block -> claiming inode (0 free)
  std::unordered_map<uint64_t, uint32_t> nlink_;   // ino -> nlink on disk
  std::unordered_map<uint64_t, uint32_t> refs_;    // ino -> directory references
  std::unordered_map<uint64_t, uint32_t> subdirs_; // dir ino -> subdirectories
  std::unordered_map<uint64_t, uint64_t> parent_;  // dir ino -> parent from entries
  std::unordered_map<uint64_t, uint64_t> dotdot_;  // dir ino -> parent in inode
  std::unordered_map<uint64_t, uint32_t> mode_;
  std::unordered_map<uint64_t, uint8_t> entry_type_;  // ino -> d_type of its first entry
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

void Checker::claim(uint64_t block, uint64_t ino, const char* what) {
  if (block < sb_.data_start || block >= sb_.total_blocks) {
    problem("inode " + std::to_string(ino) + ": " + what + " block " + std::to_string(block) +
            " is outside the data area");
    return;
  }
  if (owner_[block] != 0) {
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
  mode_[ino] = d.mode;
  nlink_[ino] = d.nlink;
  if (!bit(ibmp_, ino)) problem(who + ": in use but free in the inode bitmap");
  uint32_t type = d.mode & S_IFMT;
  if (type != S_IFREG && type != S_IFDIR && type != S_IFLNK && type != S_IFCHR &&
      type != S_IFBLK && type != S_IFIFO && type != S_IFSOCK) {
    problem(who + ": invalid file type");
    return;
  }
  if (d.xattr_block) check_xattr_block(ino, d);
  check_flag_bits(who, d);
  if (d.flags & kInodeInlineData) {
    check_block_count(who, d, 0);
    if (d.size > kInodeRootSize) problem(who + ": inline data larger than the inode");
    else if (type == S_IFLNK) check_symlink(ino, d, nullptr);
    return;
  }
  auto map = ExtentMap::load(cache_, ino, d, sb_.total_blocks);
  if (!map.ok()) {
    problem(who + ": extent map is corrupt");
    return;
  }
  for (uint64_t b : (*map)->node_blocks()) claim(b, ino, "extent tree");
  for (const auto& [lo, e] : (*map)->extents())
    for (uint32_t i = 0; i < e.len; i++) claim(e.physical + i, ino, "data");
  res_.data_blocks += (*map)->mapped_blocks();
  check_block_count(who, d, (*map)->mapped_blocks());
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
void Checker::check_block_count(const std::string& who, const DiskInode& d, uint64_t mapped) {
  uint64_t charged = mapped + (d.xattr_block ? 1 : 0);
  if (d.blocks == charged) return;
  problem(who + ": block count " + std::to_string(d.blocks) + ", but it holds " +
          std::to_string(charged) + " (" + std::to_string(mapped) + " mapped" +
          (d.xattr_block ? " + 1 xattr block" : "") + ")");
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
    std::string value(vl, '\0');
    dec.bytes(value.data(), vl);
    if (nl == 0) {
      problem(at + " has an empty name");
      return;
    }
    if (is_posix_acl_name(name)) {
      check_acl_xattr(at, d, name, value);
      names.push_back(std::move(name));
      continue;
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

// A POSIX ACL (system.posix_acl_access / _default): a valid ACL in the
// kernel's xattr format, never an empty one (the engine removes the
// xattr instead), a default ACL only on a directory, and an access ACL
// whose owner, mask-or-group and other entries agree with the mode (the
// engine keeps them in step on chmod and setxattr).
void Checker::check_acl_xattr(const std::string& at, const DiskInode& d, std::string_view name,
                              std::string_view value) {
  std::string what = at + " (" + std::string(name) + ")";
  auto acl = decode_acl(value);
  if (!acl.ok() || acl->empty()) {
    problem(what + ": not a valid POSIX ACL");
    return;
  }
  if (name == kAclDefaultXattr && !S_ISDIR(d.mode)) {
    problem(what + ": a default ACL on an inode that is not a directory");
    return;
  }
  if (name == kAclAccessXattr && acl_mode_bits(*acl, nullptr) != (d.mode & 0777))
    problem(what + ": its permissions disagree with the mode");
}

// The inode's flags word holds only bits the format defines (inline data
// and the chattr flags): anything else was written by something that is
// not stablefs, or is corruption the inode's checksum did not catch.
void Checker::check_flag_bits(const std::string& who, const DiskInode& d) {
  if (uint32_t unknown = d.flags & ~uint32_t(kInodeKnownFlags)) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "%#x", unknown);
    problem(who + ": unknown inode flag bits " + hex);
  }
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
      problem(who + ": directory block " + std::to_string(i) + " is not mapped");
      return;
    }
    auto buf = cache_.read(e->physical + (i - e->logical), kMagicDirectory);
    if (!buf.ok()) {
      problem(who + ": directory block " + std::to_string(e->physical + (i - e->logical)) +
              " is corrupt");
      return;
    }
    blocks.push_back(*buf);
  }
  auto dir = Directory::load(ino, std::move(blocks));
  if (!dir.ok()) {
    problem(who + ": directory entries are corrupt");
    return;
  }
  (*dir)->list(0, [&](const DirEntry& e, uint64_t) {
    refs_[e.ino]++;
    if (e.type == kTypeDir) {
      subdirs_[ino]++;
      parent_[e.ino] = ino;
    }
    if (e.ino == 0 || e.ino > sb_.inode_count)
      problem(who + ": entry '" + e.name + "' points to invalid inode " + std::to_string(e.ino));
    auto [it, first] = entry_type_.emplace(e.ino, e.type);
    if (!first && it->second != e.type)
      problem(who + ": entry '" + e.name + "' gives inode " + std::to_string(e.ino) +
              " another type than its other names do");
    return true;
  });
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

void Checker::check_links() {
  for (auto& [ino, nlink] : nlink_) {
    std::string who = "inode " + std::to_string(ino);
    bool dir = (mode_[ino] & S_IFMT) == S_IFDIR;
    uint32_t expect = dir ? 2 + subdirs_[ino] : refs_[ino];
    if (ino == kRootIno) {
      if (refs_[ino] != 0) problem("root directory is linked from a directory");
    } else if (refs_[ino] == 0) {
      if (nlink == 0) {
        orphans_.push_back(ino);
      } else {
        problem(who + ": in use but not in any directory");
      }
      continue;
    }
    if (dir && ino != kRootIno && refs_[ino] != 1)
      problem(who + ": directory has " + std::to_string(refs_[ino]) + " names");
    if (nlink != expect)
      problem(who + ": link count " + std::to_string(nlink) + ", should be " +
              std::to_string(expect));
    if (dir && ino != kRootIno && parent_.count(ino) && dotdot_[ino] != parent_[ino])
      problem(who + ": '..' names " + std::to_string(dotdot_[ino]) + " but it lives in " +
              std::to_string(parent_[ino]));
  }
  for (auto& [ino, n] : refs_)
    if (!nlink_.count(ino))
      problem("directory entry points to free inode " + std::to_string(ino));
  // d_type values are the S_IFMT bits shifted down (<dirent.h>).
  for (auto& [ino, type] : entry_type_)
    if (auto m = mode_.find(ino); m != mode_.end() && (m->second & S_IFMT) >> 12 != type)
      problem("inode " + std::to_string(ino) + ": directory entries give it type " +
              std::to_string(type) + ", its mode says " +
              std::to_string((m->second & S_IFMT) >> 12));
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
  for (size_t i = 0; i < orphans_.size() && i < 10; i++)
    problem("inode " + std::to_string(orphans_[i]) +
            ": link count 0 and in no directory in a cleanly unmounted filesystem: nothing "
            "will free it");
  if (orphans_.size() > 10)
    problem(std::to_string(orphans_.size()) + " such orphans in all");
}

void Checker::check_block_bitmap() {
  uint64_t leaked = 0, unmarked = 0;
  for (uint64_t b = sb_.data_start; b < sb_.total_blocks; b++) {
    bool marked = bit(bbmp_, b);
    if (owner_[b] && !marked) {
      if (unmarked++ < 10)
        problem("block " + std::to_string(b) + " is used by inode " + std::to_string(owner_[b]) +
                " but free in the bitmap");
    } else if (!owner_[b] && marked) {
      leaked++;
    }
  }
  if (unmarked > 10) problem(std::to_string(unmarked) + " used blocks are free in the bitmap");
  if (leaked) problem(std::to_string(leaked) + " blocks are marked in use but belong to no inode");
  for (uint64_t b = 0; b < sb_.data_start; b++)
    if (!bit(bbmp_, b)) {
      problem("metadata block " + std::to_string(b) + " is free in the bitmap");
      break;
    }
}

bool Checker::load_bitmaps() {
  for (uint64_t i = 0; i < sb_.inode_bitmap_blocks; i++) {
    auto b = cache_.read(sb_.inode_bitmap_start + i, kMagicInodeBitmap);
    if (!b.ok()) {
      problem("inode bitmap block " + std::to_string(sb_.inode_bitmap_start + i) + " is corrupt");
      return false;
    }
    ibmp_.push_back(*b);
  }
  for (uint64_t i = 0; i < sb_.block_bitmap_blocks; i++) {
    auto b = cache_.read(sb_.block_bitmap_start + i, kMagicBlockBitmap);
    if (!b.ok()) {
      problem("block bitmap block " + std::to_string(sb_.block_bitmap_start + i) + " is corrupt");
      return false;
    }
    bbmp_.push_back(*b);
  }
  return true;
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
  if (!load_bitmaps()) return res_;
  SFS_TRY(check_checksum_table_blocks());
  owner_.assign(sb_.total_blocks, 0);
  bool root_seen = false;
  for (uint64_t blk = 0; blk < sb_.inode_table_blocks; blk++) {
    if (opts_.progress) opts_.progress(blk, sb_.inode_table_blocks);
    uint64_t nr = sb_.inode_table_start + blk;
    auto buf = cache_.read(nr, kMagicInodeTable);
    if (!buf.ok()) {
      problem("inode table block " + std::to_string(nr) + " is corrupt");
      continue;
    }
    for (uint32_t slot = 0; slot < kInodesPerBlock; slot++) {
      uint64_t ino = blk * kInodesPerBlock + slot + 1;
      DiskInode d = decode_inode((*buf)->payload() + slot * kInodeSize);
      if (d.mode == 0) {
        if (bit(ibmp_, ino)) problem("inode " + std::to_string(ino) + ": free but marked in use");
        continue;
      }
      if (ino == kRootIno) root_seen = (d.mode & S_IFMT) == S_IFDIR;
      check_inode(ino, d);
    }
  }
  if (!root_seen) problem("root directory is missing");
  check_links();
  check_orphans();
  check_block_bitmap();
  if (opts_.progress) opts_.progress(sb_.inode_table_blocks, sb_.inode_table_blocks);
  return res_;
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
