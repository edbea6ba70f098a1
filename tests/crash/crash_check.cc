#include "tests/crash/crash_check.h"

#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <map>

#include "core/base/format.h"
#include "core/filesystem.h"
#include "core/fsck.h"
#include "core/io/borrowed_device.h"

namespace stablefs::crash {
namespace {

// fsck rewrites a torn superblock copy from the valid one and says so;
// counted for the report, not an inconsistency (the two-copy protocol
// exists to survive exactly that).
bool is_superblock_copy_repair(const std::string& line) {
  return line.find("superblock was invalid") != std::string::npos;
}

std::string fsck_image(BlockDevice& dev, const char* when, uint64_t* replayed,
                       uint64_t* damaged_sb, uint64_t* discarded = nullptr) {
  std::string problems;
  uint64_t sb_problems = 0;
  FsckOptions o;
  o.scrub = true;
  o.report = [&](const std::string& line) {
    if (problems.size() < 2000) problems += "\n  " + line;
    if (is_superblock_copy_repair(line)) sb_problems++;
  };
  auto r = check_filesystem(dev, o);
  if (!r.ok()) return std::string("fsck ") + when + " could not run: " + std::strerror(r.error());
  if (replayed) *replayed = r->journal_transactions_replayed;
  if (discarded) *discarded = r->journal_transactions_discarded;
  if (damaged_sb) *damaged_sb += sb_problems;
  if (r->errors || r->checksum_mismatches)
    return std::string("fsck ") + when + ": " + std::to_string(r->errors) + " errors, " +
           std::to_string(r->checksum_mismatches) + " checksum mismatches" + problems;
  return "";
}

Result<std::string> read_whole(Filesystem& fs, uint64_t ino) {
  auto a = fs.getattr(ino);
  if (!a.ok()) return Error{a.error()};
  std::string data(a->size, '\0');
  size_t at = 0;
  while (at < data.size()) {
    auto r = fs.read(ino, at, std::min<size_t>(data.size() - at, 256 * 1024), data.data() + at);
    if (!r.ok()) return Error{r.error()};
    if (*r == 0) break;
    at += *r;
  }
  data.resize(at);
  return data;
}

// Reads every file under `dir`: a referenced block that fails its checksum
// or a broken mapping shows up as an error here.
std::string walk(Filesystem& fs, uint64_t dir, const std::string& path, int depth) {
  if (depth > 8) return "directory nesting deeper than the workload makes at " + path;
  std::vector<DirListEntry> entries;
  Status s = fs.readdir(dir, 0, [&](const DirListEntry& e) {
    if (e.name != "." && e.name != "..") entries.push_back(e);
    return true;
  });
  if (!s.ok()) return "readdir " + path + ": " + std::strerror(s.error());
  for (const auto& e : entries) {
    std::string p = path + "/" + e.name;
    auto a = fs.lookup(dir, e.name);
    if (!a.ok()) return "lookup " + p + ": " + std::strerror(a.error());
    fs.forget(a->ino, 1);
    if (S_ISDIR(a->mode)) {
      std::string r = walk(fs, a->ino, p, depth + 1);
      if (!r.empty()) return r;
    } else if (S_ISREG(a->mode)) {
      auto d = read_whole(fs, a->ino);
      if (!d.ok()) return "read " + p + ": " + std::strerror(d.error());
      if (d->size() != a->size) return "short read of " + p;
    } else if (S_ISLNK(a->mode)) {
      auto t = fs.readlink(a->ino);
      if (!t.ok()) return "readlink " + p + ": " + std::strerror(t.error());
      if (t->size() != a->size || t->empty()) return "symlink " + p + " lost its target";
    }
  }
  return "";
}

// "" when the inode's extended attributes are exactly `want`.
std::string xattrs_differ(Filesystem& fs, uint64_t ino,
                          const std::map<std::string, std::string>& want) {
  auto names = fs.listxattr(ino);
  if (!names.ok()) return std::string("listxattr: ") + std::strerror(names.error());
  std::map<std::string, std::string> got;
  for (size_t at = 0; at < names->size();) {
    size_t end = names->find('\0', at);
    if (end == std::string::npos) end = names->size();
    std::string k = names->substr(at, end - at);
    at = end + 1;
    auto x = fs.getxattr(ino, k);
    if (!x.ok()) return "getxattr " + k + ": " + std::strerror(x.error());
    got[k] = *x;
  }
  if (got == want) return "";
  return "has " + std::to_string(got.size()) + " xattrs, expected " +
         std::to_string(want.size()) + " (or other values)";
}

Result<uint64_t> resolve(Filesystem& fs, const std::string& path) {
  uint64_t ino = kRootIno;
  size_t at = 0;
  while (at <= path.size()) {
    size_t slash = path.find('/', at);
    if (slash == std::string::npos) slash = path.size();
    auto a = fs.lookup(ino, std::string_view(path).substr(at, slash - at));
    if (!a.ok()) return Error{a.error()};
    fs.forget(a->ino, 1);
    ino = a->ino;
    at = slash + 1;
  }
  return ino;
}

}  // namespace

ImageVerdict check_crash_image(const std::function<std::unique_ptr<BlockDevice>()>& make_image,
                               const std::vector<Expectation>& expectations, size_t pos) {
  ImageVerdict v;
  {
    auto dev = make_image();
    v.inconsistency = fsck_image(*dev, "of the crash image", &v.replayed,
                                 &v.damaged_superblock_copies, &v.discarded);
    if (!v.inconsistency.empty()) return v;
  }
  auto dev = make_image();
  MountOptions o;
  o.cache_bytes = 4 << 20;
  o.commit_seconds = 3600;  // only fsync and unmount commit: fewer timing effects
  o.meta_cache_bytes = 32 * kBlockSize;  // verify through evicted metadata too
  std::string why;
  auto m = Filesystem::mount(std::make_unique<BorrowedDevice>(*dev), o, &why);
  if (!m.ok()) {
    v.inconsistency = "mount of the crash image failed: " + why;
    return v;
  }
  Filesystem& fs = **m;
  v.inconsistency = walk(fs, kRootIno, "", 0);
  for (const auto& e : expectations) {
    if (!e.active_at(pos)) continue;
    v.pairs_checked++;
    v.bytes_checked += e.content.size();
    auto ino = resolve(fs, e.path);
    if (!ino.ok()) {
      v.lost += "\n  " + e.path + " (fsync'd at log position " + std::to_string(e.from) +
                ", " + std::to_string(e.content.size()) + " bytes): " + std::strerror(ino.error());
      continue;
    }
    std::string why = xattrs_differ(fs, *ino, e.xattrs);
    if (!why.empty()) {
      v.lost += "\n  " + e.path + " (fsync'd at log position " + std::to_string(e.from) +
                "): " + why;
      continue;
    }
    auto got = e.symlink ? fs.readlink(*ino) : read_whole(fs, *ino);
    if (!got.ok() || *got != e.content) {
      size_t diff = 0;
      if (got.ok())
        while (diff < got->size() && diff < e.content.size() && (*got)[diff] == e.content[diff])
          diff++;
      v.lost += "\n  " + e.path + " (fsync'd at log position " + std::to_string(e.from) + "): " +
                (got.ok() ? "has " + std::to_string(got->size()) + " bytes, expected " +
                                std::to_string(e.content.size()) + ", first difference at byte " +
                                std::to_string(diff)
                          : std::string(std::strerror(got.error())));
    }
  }
  Status u = fs.unmount();
  m->reset();
  if (!u.ok() && v.inconsistency.empty())
    v.inconsistency = std::string("unmount failed: ") + std::strerror(u.error());
  if (v.inconsistency.empty()) v.inconsistency = fsck_image(*dev, "after mount and unmount", nullptr, nullptr);
  return v;
}

}  // namespace stablefs::crash
