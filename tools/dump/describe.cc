#include "tools/dump/describe.h"

#include <sys/stat.h>

#include <cstring>
#include <ctime>

#include "tools/fs_identity.h"

namespace stablefs {
namespace {

std::string utc_time(int64_t sec, uint32_t nsec) {
  time_t t = time_t(sec);
  struct tm tm {};
  char buf[64];
  if (!gmtime_r(&t, &tm) || !std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm))
    return std::to_string(sec);
  char out[96];
  std::snprintf(out, sizeof out, "%s.%09uZ", buf, nsec);
  return out;
}

const char* type_name(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "symlink";
    case S_IFCHR: return "char device";
    case S_IFBLK: return "block device";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    default: return "invalid";
  }
}

const char* dir_type_name(uint8_t t) {
  switch (t) {
    case kTypeReg: return "file";
    case kTypeDir: return "directory";
    case kTypeLnk: return "symlink";
    case kTypeChr: return "char device";
    case kTypeBlk: return "block device";
    case kTypeFifo: return "fifo";
    case kTypeSock: return "socket";
    default: return "unknown";
  }
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

std::string octal(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0%o", v);
  return buf;
}

void add_region(std::vector<Record>& rows, const char* name, uint64_t start, uint64_t blocks) {
  rows.emplace_back().add("region", name).add("start", start).add("blocks", blocks);
}

void describe_superblock(Record& out, const Superblock& sb, const SuperblockCopies& c) {
  out.add("magic", "STABFS01").add("format_version", uint64_t(sb.version));
  out.add("label", sb.label).add("uuid", format_uuid(sb.uuid));
  out.add("state", sb.state == kStateClean     ? "clean"
                   : sb.state == kStateMounted ? "mounted (or not cleanly unmounted)"
                                               : "invalid");
  out.add("created", utc_time(int64_t(sb.mkfs_time), 0));
  out.add("mount_count", sb.mount_count).add("sequence", sb.sequence);
  out.add("compat", hex32(sb.compat)).add("ro_compat", hex32(sb.ro_compat));
  // The incompat flags (core/FORMAT.md), by name.
  std::string names;
  if (sb.incompat & kIncompatAsyncCommit) names += " async_commit";
  if (sb.incompat & kIncompatJournalData) names += " journal_data";
  if (sb.incompat & kIncompatLazyInit) names += " lazy_init";
  if (sb.incompat & kIncompatJournalDeltas) names += " journal_deltas";
  out.add("incompat", hex32(sb.incompat) + (names.empty() ? "" : " (" + names.substr(1) + ")"));
  out.add("primary_copy", c.primary_valid ? "valid" : "INVALID: " + c.primary_problem);
  out.add("backup_copy", c.backup_valid ? "valid" : "INVALID: " + c.backup_problem);
}

void describe_journal(Record& out, const Superblock& sb, const JournalState& j) {
  out.add("start", sb.journal_start).add("blocks", sb.journal_blocks);
  out.add("tail_offset", j.tail.pos).add("tail_txid", j.tail.txid);
  // What a mount (or fsck) would replay; the dump shows the result of
  // replaying them in memory.
  out.add("transactions_to_replay", j.replay.transactions);
  out.add("blocks_to_replay", j.replay.blocks);
  out.add("discarded_async_commits", j.replay.discarded);
  out.add("head_offset", j.replay.head.pos).add("next_txid", j.replay.head.txid);
  out.add("scan_stopped", j.replay.stop_reason);
}

}  // namespace

Record describe_filesystem(const ImageReader& r) {
  const Superblock& sb = r.superblock();
  Record out;
  if (r.mounted())
    out.add("warning", "mounted: the image may be behind the daemon's memory");
  describe_superblock(out.add_record("superblock"), sb, r.copies());
  Record& geo = out.add_record("geometry");
  geo.add("block_size", uint64_t(sb.block_size)).add("total_blocks", sb.total_blocks);
  geo.add("inode_count", sb.inode_count).add("data_blocks", sb.total_blocks - sb.data_start);
  // Lazy initialisation (core/FORMAT.md): what the metadata covers so far.
  geo.add("lazy_init", uint64_t(sb.incompat & kIncompatLazyInit ? 1 : 0));
  geo.add("inode_high_water_mark", sb.inode_hwm).add("block_high_water_mark", sb.block_hwm);
  auto& regions = geo.add_list("regions");
  add_region(regions, "superblocks", kSuperblockA, 2);
  add_region(regions, "inode_bitmap", sb.inode_bitmap_start, sb.inode_bitmap_blocks);
  add_region(regions, "block_bitmap", sb.block_bitmap_start, sb.block_bitmap_blocks);
  add_region(regions, "inode_table", sb.inode_table_start, sb.inode_table_blocks);
  add_region(regions, "checksum_table", sb.csum_table_start, sb.csum_table_blocks);
  add_region(regions, "journal", sb.journal_start, sb.journal_blocks);
  add_region(regions, "data", sb.data_start, sb.total_blocks - sb.data_start);
  describe_journal(out.add_record("journal"), sb, r.journal());
  return out;
}

Result<Record> describe_inode(ImageReader& r, uint64_t ino, std::string* why) {
  auto d = r.inode(ino, why);
  if (!d.ok()) return Error{d.error()};
  auto used = r.inode_in_use(ino, why);
  if (!used.ok()) return Error{used.error()};
  Record out;
  out.add("inode", ino).add_bool("in_use_in_bitmap", *used);
  if (d->mode == 0) {
    out.add("type", "free");
    return out;
  }
  out.add("type", type_name(d->mode)).add("mode", octal(d->mode & 07777));
  out.add("uid", uint64_t(d->uid)).add("gid", uint64_t(d->gid)).add("links", uint64_t(d->nlink));
  out.add("size", d->size).add("blocks", d->blocks).add("generation", uint64_t(d->generation));
  out.add("atime", utc_time(d->atime.sec, d->atime.nsec));
  out.add("mtime", utc_time(d->mtime.sec, d->mtime.nsec));
  out.add("ctime", utc_time(d->ctime.sec, d->ctime.nsec));
  out.add("btime", utc_time(d->btime.sec, d->btime.nsec));
  if ((d->mode & S_IFMT) == S_IFDIR) out.add("parent", d->parent());
  else if (S_ISCHR(d->mode) || S_ISBLK(d->mode)) out.add("rdev", d->rdev);
  out.add("xattr_block", d->xattr_block);
  if (d->flags & kInodeInlineData) {
    out.add("data", "inline");
    if (S_ISLNK(d->mode) && d->size <= kInodeRootSize)
      out.add("target", std::string(reinterpret_cast<const char*>(d->root.data()), d->size));
  } else {
    out.add("extent_tree_depth", uint64_t(d->map_depth));
  }
  return out;
}

Result<Record> describe_directory(ImageReader& r, uint64_t ino, std::string* why) {
  auto d = r.inode(ino, why);
  if (!d.ok()) return Error{d.error()};
  auto dir = r.directory(ino, *d, why);
  if (!dir.ok()) return Error{dir.error()};
  Record out;
  out.add("directory", ino).add("parent", d->parent());
  auto& rows = out.add_list("entries");
  (*dir)->list(0, [&](const DirEntry& e, uint64_t cookie) {
    rows.emplace_back().add("inode", e.ino).add("type", dir_type_name(e.type)).add("cookie", cookie)
        .add("name", e.name);
    return true;
  });
  return out;
}

Result<Record> describe_extents(ImageReader& r, uint64_t ino, std::string* why) {
  auto d = r.inode(ino, why);
  if (!d.ok()) return Error{d.error()};
  auto map = r.extent_map(ino, *d, why);
  if (!map.ok()) return Error{map.error()};
  Record out;
  out.add("inode", ino).add("size", d->size).add("mapped_blocks", (*map)->mapped_blocks());
  auto& extents = out.add_list("extents");
  auto& blocks = out.add_list("blocks");
  uint64_t mismatches = 0;
  for (const auto& [lo, e] : (*map)->extents()) {
    extents.emplace_back().add("logical", uint64_t(e.logical)).add("length", uint64_t(e.len))
        .add("physical", e.physical).add_bool("unwritten", e.unwritten);
    for (uint32_t i = 0; i < e.len; i++) {
      uint64_t phys = e.physical + i;
      Record& row = blocks.emplace_back();
      row.add("logical", uint64_t(e.logical) + i).add("physical", phys);
      if (e.unwritten) {
        // Never written: reads as zeros, and no checksum applies.
        row.add("recorded", "-").add("actual", "-").add("verdict", "unwritten");
        continue;
      }
      std::string w;
      auto rec = r.recorded_checksum(phys, &w);
      auto act = r.actual_checksum(phys, &w);
      row.add("recorded", rec.ok() ? hex64(*rec) : "unreadable");
      row.add("actual", act.ok() ? hex64(*act) : "unreadable");
      bool ok = rec.ok() && act.ok() && *rec == *act;
      if (!ok) mismatches++;
      row.add("verdict", ok ? "ok" : "MISMATCH");
    }
  }
  out.add("checksum_mismatches", mismatches);
  return out;
}

}  // namespace stablefs
