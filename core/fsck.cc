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
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/base/checksum.h"
#include "core/base/endian.h"
#include "core/base/format.h"
#include "core/fsck_checker.h"
#include "core/io/overlay_device.h"
#include "core/posix_acl.h"
#include "core/unreplayed_commit.h"
#include "core/xattr_format.h"

namespace stablefs {
namespace fsck_internal {

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
  sb_.incompat &= ~kIncompatLogFeatures;  // the log is empty now
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
// its flags say ordered commit (a flush before each commit block: nothing
// before it can have been lost in a crash); otherwise a note. The commit's
// own flags, not the superblock's async_commit bit, which replay clears:
// every run must judge the same log the same way.
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
  if (c.sealed && !c.async)
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
  if (block >= sb_.block_hwm) {
    problem("inode " + std::to_string(ino) + ": " + what + " block " + std::to_string(block) +
            " is above the block high-water mark " + std::to_string(sb_.block_hwm) +
            " (nothing there can be in use)");
    return;
  }
  if (owner(block) != 0) {
    // Which owner is right is not something fsck can know (e2fsck's pass
    // 1B would clone the block for each); neither claim is freed.
    shared_.insert(block);
    problem("block " + std::to_string(block) + " is claimed by inode " +
            std::to_string(owner(block)) + " and inode " + std::to_string(ino) + " (" + what +
            ")");
    return;
  }
  owner(block) = ino;
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
    free_untrusted_inode(ino, who + ": invalid file type");
    return;
  }
  if ((d.flags & kInodeInlineData) && type != S_IFLNK) {
    // Only a short symlink keeps its bytes in the inode: a directory or
    // file flagged so has neither blocks nor a map anyone can trust.
    free_untrusted_inode(ino, who + ": inline data on an inode that is not a symlink");
    return;
  }
  mode_[ino] = d.mode;
  nlink_[ino] = d.nlink;
  std::vector<uint64_t> xattr_blocks;
  if (d.xattr_block) xattr_blocks = check_xattr_block(ino, d);
  check_flag_bits(who, d);
  if (d.flags & kInodeInlineData) {
    check_block_count(ino, d, 0, xattr_blocks.size());
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
    meta_blocks_[ino].insert(meta_blocks_[ino].end(), xattr_blocks.begin(), xattr_blocks.end());
  }
  for (const auto& [lo, e] : (*map)->extents())
    for (uint32_t i = 0; i < e.len; i++) claim(e.physical + i, ino, "data");
  res_.data_blocks += (*map)->mapped_blocks();
  check_block_count(ino, d, (*map)->mapped_blocks(), xattr_blocks.size());
  if (type == S_IFDIR) {
    check_directory(ino, d, **map);
  } else if (opts_.scrub && (type == S_IFREG || type == S_IFLNK)) {
    scrub_file(ino, **map);
  }
  if (type == S_IFLNK) check_symlink(ino, d, map->get());
}

// An inode none of whose fields can be trusted is freed (-y), but never
// the root: nothing would take its place (e2fsck's pass 3 recreates it,
// fsck.stablefs cannot), and freeing it leaves a filesystem that has no
// root, which the next check reports and no repair fixes (the fsck
// fuzzer's find). Its entries were not read, so the rest of the namespace
// is incomplete: no link count, entry or block is fixed on its account.
void Checker::free_untrusted_inode(uint64_t ino, const std::string& line) {
  if (ino == kRootIno) {
    unreadable(line + " (the root directory is never freed)");
    return;
  }
  fixable(line, false, [&](RepairPlan&) { clear_inode(ino); });
}

// `blocks` (st_blocks / 8) charges every mapped block, unwritten ones
// included, plus the xattr blocks (the one block, or an index and its
// members). Extent-tree nodes are not charged: the engine allocates them
// through a NodeAllocator that knows no inode.
void Checker::check_block_count(uint64_t ino, const DiskInode& d, uint64_t mapped,
                                uint64_t xattr) {
  uint64_t charged = mapped + xattr;
  if (d.blocks == charged) return;
  std::string xattr_part;
  if (xattr) xattr_part = " + " + std::to_string(xattr) + " xattr block" + (xattr > 1 ? "s" : "");
  fixable("inode " + std::to_string(ino) + ": block count " + std::to_string(d.blocks) +
              ", but it holds " + std::to_string(charged) + " (" + std::to_string(mapped) +
              " mapped" + xattr_part + ")",
          true, [&](RepairPlan& p) { p.inodes[ino].blocks = charged; });
}

// The xattr block: its own, a valid XATR block, and every record inside
// the payload: `u16 count`, then per record `u8 name_len` (not 0) ·
// `u16 value_len` · name · value. Names are unique and in a namespace the
// engine serves (user., trusted., security.). Or, with large_xattrs, an
// XIDX index whose members hold the set (check_xattr_set). Returns the
// blocks the inode is charged for: the block, and an index's members.
std::vector<uint64_t> Checker::check_xattr_block(uint64_t ino, const DiskInode& d) {
  std::string who =
      "inode " + std::to_string(ino) + ": xattr block " + std::to_string(d.xattr_block);
  claim(d.xattr_block, ino, "xattr");
  std::vector<uint64_t> charged = {d.xattr_block};
  if (d.xattr_block < sb_.data_start || d.xattr_block >= sb_.total_blocks) return charged;
  AlignedBlock b;
  std::string why;
  if (!dev_.read(d.xattr_block, b.data(), kBlockSize).ok()) {
    problem(who + ": read error");
    return charged;
  }
  const uint32_t magic = decode_meta_header(b.data()).magic;
  if (!verify_meta_block(b.data(), d.xattr_block,
                         magic == kMagicXattrIndex ? kMagicXattrIndex : kMagicXattr, &why)
           .ok()) {
    // What is not an intact XATR block may be an index: its members are
    // then unknown, and no block may be freed as leaked.
    if (magic == kMagicXattr) problem(who + ": " + why);
    else unreadable(who + ": " + why);
    return charged;
  }
  if (uint64_t owner = decode_meta_header(b.data()).owner; owner != ino) {
    problem(who + " belongs to inode " + std::to_string(owner));
    return charged;
  }
  if (magic == kMagicXattrIndex) return check_xattr_set(ino, d, who, b.data());
  check_xattr_records(who, d, b.data() + kMetaHeaderSize, kMetaPayload, XattrLayout::kBlock);
  return charged;
}

// An XIDX index (core/FORMAT.md, "Xattr sets of several blocks"): the
// feature bit, a member count within bounds that matches the set's size,
// members that are the inode's own XDAT blocks (each claimed: a block two
// inodes claim is reported), zero past the set, the set's hash, then its
// records as the one block's. An index that cannot be decoded leaves its
// members unknown, so nothing may be freed as leaked (unreadable).
std::vector<uint64_t> Checker::check_xattr_set(uint64_t ino, const DiskInode& d,
                                               const std::string& who, const uint8_t* index) {
  std::vector<uint64_t> charged = {d.xattr_block};
  if (!(sb_.incompat & kIncompatLargeXattrs))
    problem(who + " is an xattr index, but the superblock lacks the large_xattrs feature");
  std::string why;
  auto x = decode_xattr_index(index + kMetaHeaderSize, &why);
  if (!x.ok()) {
    unreadable(who + ": " + why);
    return charged;
  }
  std::string set(x->set_bytes, '\0');
  bool whole = true;
  for (size_t i = 0; i < x->members.size(); i++) {
    const uint64_t m = x->members[i];
    const std::string at = who + ": member " + std::to_string(i) + " (block " +
                           std::to_string(m) + ")";
    claim(m, ino, "xattr");
    charged.push_back(m);
    AlignedBlock b;
    if (m >= sb_.total_blocks || !dev_.read(m, b.data(), kBlockSize).ok()) {
      problem(at + ": cannot be read");
      whole = false;
      continue;
    }
    if (!verify_meta_block(b.data(), m, kMagicXattrData, &why).ok()) {
      problem(at + ": " + why);
      whole = false;
      continue;
    }
    if (uint64_t owner = decode_meta_header(b.data()).owner; owner != ino) {
      problem(at + " belongs to inode " + std::to_string(owner));
      whole = false;
      continue;
    }
    const size_t from = i * kMetaPayload, n = std::min<size_t>(kMetaPayload, set.size() - from);
    std::memcpy(set.data() + from, b.data() + kMetaHeaderSize, n);
    const uint8_t* tail = b.data() + kMetaHeaderSize + n;
    if (std::any_of(tail, static_cast<const uint8_t*>(b.data()) + kBlockSize,
                    [](uint8_t c) { return c != 0; }))
      problem(at + ": bytes past the end of the set are not zero");
  }
  if (!whole) return charged;
  if (xattr_set_hash(ino, set) != x->set_hash) {
    problem(who + ": its members do not hold the set it describes (hash mismatch)");
    return charged;
  }
  const auto* p = reinterpret_cast<const uint8_t*>(set.data());
  check_xattr_records(who, d, p, set.size(), XattrLayout::kSet);
  // The index bounds the set's size; the names must fit one listxattr.
  size_t list = 0;
  (void)parse_xattr_records(p, set.size(), XattrLayout::kSet,
                            [&](std::string_view k, std::string_view) { list += k.size() + 1; });
  if (list > kXattrListMax)
    problem(who + ": its names take " + std::to_string(list) + " bytes, more than one listxattr "
            "returns (" + std::to_string(kXattrListMax) + ")");
  return charged;
}

// The records of an xattr block or set: well formed, names unique (in
// order, for a set) and in a namespace the engine serves, ACLs valid.
void Checker::check_xattr_records(const std::string& who, const DiskInode& d, const uint8_t* p,
                                  size_t n, XattrLayout layout) {
  std::vector<std::string> names;
  uint32_t i = 0;
  std::string bad = parse_xattr_records(p, n, layout, [&](std::string_view k, std::string_view v) {
    const std::string at = who + ": record " + std::to_string(i++);
    std::string name(k);
    if (layout == XattrLayout::kSet && !names.empty() && name <= names.back())
      problem(at + ": names are not in increasing order");
    if (is_posix_acl_name(name)) {
      check_acl_xattr(at, d, name, v);
    } else {
      bool known = false;
      for (std::string_view pre : {"user.", "trusted.", "security."})
        known |= name.size() > pre.size() && name.compare(0, pre.size(), pre) == 0;
      if (!known || name.find('\0') != std::string::npos) problem(at + ": invalid name");
    }
    names.push_back(std::move(name));
  });
  if (!bad.empty()) problem(who + ": " + bad);
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

Status Checker::check_checksum_table_blocks() {
  const BlockSpan span = initialised_spans(sb_).csum_table;
  for (uint64_t nr = span.first; nr < span.end(); nr++) {
    AlignedBlock b;
    std::string why;
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
  owner_.assign(sb_.block_hwm - sb_.data_start, 0);
  bool root_seen = false;
  // Only the table under the inode high-water mark was ever written.
  const uint64_t table_blocks = initialised_spans(sb_).inode_table.count;
  for (uint64_t blk = 0; blk < table_blocks; blk++) {
    if (opts_.progress) opts_.progress(blk, table_blocks);
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
      if (ino > sb_.inode_hwm)
        problem("inode " + std::to_string(ino) + ": in use above the inode high-water mark " +
                std::to_string(sb_.inode_hwm));
      if (ino == kRootIno) root_seen = (d.mode & S_IFMT) == S_IFDIR;
      check_inode(ino, d);
    }
  }
  if (!root_seen) problem("root directory is missing");
  check_links();
  check_orphans();
  rebuild_bitmaps();
  check_block_bitmap();
  check_high_water_marks();
  if (opts_.progress) opts_.progress(table_blocks, table_blocks);
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

}  // namespace fsck_internal

Result<FsckResult> check_filesystem(BlockDevice& dev, const FsckOptions& opts) {
  if (opts.read_only) {
    // Replay and everything else write here; the image never sees it.
    OverlayDevice overlay(dev);
    fsck_internal::Checker c(overlay, opts);
    return c.run();
  }
  fsck_internal::Checker c(dev, opts);
  return c.run();
}

}  // namespace stablefs
