// fsck's repairs through the journal; the order and why it is crash-safe
// are in core/fsck_repair.h.
#include "core/fsck_repair.h"

#include <cerrno>
#include <cstring>

#include "core/base/endian.h"

namespace stablefs {
namespace {

class Repairer {
 public:
  Repairer(BufferCache& cache, const Superblock& sb, Journal& journal)
      : cache_(cache), sb_(sb), journal_(journal) {}

  Status fix_entries(RepairPlan& plan);
  Status fix_inodes(const RepairPlan& plan);
  Status fix_bitmap(const std::map<uint64_t, bool>& bits, uint64_t start, uint64_t count,
                    uint32_t magic, bool set, const std::set<uint64_t>& whole);
  Status zero_checksums(const std::vector<uint64_t>& blocks);

 private:
  Status fix_inode(uint64_t ino, const RepairPlan::InodeFix& f);

  BufferCache& cache_;
  const Superblock& sb_;
  Journal& journal_;
};

Status Repairer::fix_entries(RepairPlan& plan) {
  for (const auto& e : plan.entries) {
    auto d = plan.dirs.find(e.dir);
    if (d == plan.dirs.end()) return err(EINVAL);  // the check planned an edit it did not load
    Handle h = journal_.start();
    SFS_TRY(e.remove ? d->second->remove(h, e.name) : d->second->replace(h, e.name, e.ino, e.type));
  }
  return Status::Ok();
}

Status Repairer::fix_inode(uint64_t ino, const RepairPlan::InodeFix& f) {
  auto buf = cache_.read(inode_block(sb_, ino), kMagicInodeTable);
  if (!buf.ok()) return Error{buf.error()};
  Handle h = journal_.start();
  SFS_TRY(h.get_write_access(**buf));
  uint8_t* rec = (*buf)->payload() + inode_slot(ino) * kInodeSize;
  DiskInode d = decode_inode(rec);
  if (f.clear) {
    // As the engine frees a slot: everything zero but the generation,
    // which the slot's next user bumps.
    uint32_t gen = d.generation;
    d = DiskInode{};
    d.generation = gen;
    // Its metadata blocks may still have versions in an older log
    // region: a revoke keeps any replay from writing them back.
    for (uint64_t b : f.meta_blocks) h.revoke(b);
  }
  if (f.nlink) d.nlink = *f.nlink;
  if (f.blocks) d.blocks = *f.blocks;
  if (f.parent) d.rdev = *f.parent;
  encode_inode(rec, d);
  h.dirty_metadata(**buf);
  return Status::Ok();
}

Status Repairer::fix_inodes(const RepairPlan& plan) {
  for (const auto& [ino, f] : plan.inodes) SFS_TRY(fix_inode(ino, f));
  return Status::Ok();
}

// Sets (set = true) or clears the bits in `bits` that ask for it, one
// handle per bitmap block of [start, start + count). The set pass also
// writes every block in `whole` (rebuilt: it holds exactly its set bits),
// in the same handle as its bits, so no committed version of it ever
// lacks a bit that is in use.
Status Repairer::fix_bitmap(const std::map<uint64_t, bool>& bits, uint64_t start, uint64_t count,
                            uint32_t magic, bool set, const std::set<uint64_t>& whole) {
  std::set<uint64_t> blocks;
  for (const auto& [n, on] : bits)
    if (on == set) blocks.insert(start + n / kBitsPerBitmapBlock);
  if (set)
    for (uint64_t nr : whole)
      if (nr >= start && nr < start + count) blocks.insert(nr);
  for (uint64_t nr : blocks) {
    auto buf = cache_.read(nr, magic);
    if (!buf.ok()) return Error{buf.error()};
    Handle h = journal_.start();
    SFS_TRY(h.get_write_access(**buf));
    uint8_t* p = (*buf)->payload();
    const uint64_t first = (nr - start) * kBitsPerBitmapBlock;
    for (auto it = bits.lower_bound(first);
         it != bits.end() && it->first < first + kBitsPerBitmapBlock; ++it) {
      if (it->second != set) continue;
      const uint64_t i = it->first - first;
      if (set)
        p[i / 8] |= uint8_t(1u << (i % 8));
      else
        p[i / 8] &= uint8_t(~(1u << (i % 8)));
    }
    h.dirty_metadata(**buf);
  }
  return Status::Ok();
}

Status Repairer::zero_checksums(const std::vector<uint64_t>& blocks) {
  for (uint64_t b : blocks) {
    auto buf = cache_.read(sb_.csum_table_start + b / kChecksumsPerBlock, kMagicChecksumTable);
    if (!buf.ok()) return Error{buf.error()};
    Handle h = journal_.start();
    SFS_TRY(h.get_write_access(**buf));
    put_le64((*buf)->payload() + (b % kChecksumsPerBlock) * 8, 0);
    h.dirty_metadata(**buf);
  }
  return Status::Ok();
}

}  // namespace

Status apply_repairs(BlockDevice& dev, BufferCache& cache, const Superblock& sb,
                     JournalPosition head, std::function<Status(JournalPosition)> persist_tail,
                     RepairPlan& plan) {
  JournalOptions jo;
  jo.persist_tail = std::move(persist_tail);
  Journal journal(dev, cache, {sb.journal_start, sb.journal_blocks}, head, std::move(jo));
  Repairer r(cache, sb, journal);
  // The order of header comment's argument: references go before what
  // they refer to, used bits are set before leaked ones are cleared.
  Status s = r.fix_entries(plan);
  if (s.ok()) s = r.fix_inodes(plan);
  auto bitmaps = [&](bool set) {
    Status st = r.fix_bitmap(plan.inode_bits, sb.inode_bitmap_start, sb.inode_bitmap_blocks,
                             kMagicInodeBitmap, set, plan.rebuilt_bitmaps);
    if (!st.ok()) return st;
    return r.fix_bitmap(plan.block_bits, sb.block_bitmap_start, sb.block_bitmap_blocks,
                        kMagicBlockBitmap, set, plan.rebuilt_bitmaps);
  };
  if (s.ok()) s = bitmaps(true);
  if (s.ok()) s = bitmaps(false);
  if (s.ok()) s = r.zero_checksums(plan.checksums_to_zero);
  // Commit what was made, even after a failure: every prefix is safe.
  Status down = journal.shutdown();
  return s.ok() ? down : s;
}

}  // namespace stablefs
