#include "tests/crash/crash_workload.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "core/base/format.h"

namespace stablefs::crash {
namespace {

constexpr uint64_t kMaxFile = 192 * 1024;  // keeps the whole tree well inside a small device
constexpr int kFileNames = 8;              // f0..f7 per directory
constexpr int kDirNames = 3;               // t0..t2
constexpr int kSymlinkNames = 3;           // s0..s2 per directory

}  // namespace

CrashWorkload::CrashWorkload(Filesystem& fs, uint64_t seed, std::function<size_t()> log_pos)
    : fs_(fs), rng_(seed), pos_(std::move(log_pos)) {
  dirs_[kRootIno] = Dir{kRootIno, "", true, {}};
}

bool CrashWorkload::fail(const std::string& what, int e) {
  if (err_.empty())
    err_ = "op " + std::to_string(opno_) + ": " + what + ": " + std::strerror(e);
  return true;
}

std::string CrashWorkload::setup() {
  for (int i = 0; i < 4; i++) {
    std::string name = "d" + std::to_string(i);
    auto a = fs_.mkdir(kRootIno, name, S_IFDIR | 0755, {});
    if (!a.ok()) return "mkdir " + name + ": " + std::strerror(a.error());
    fs_.forget(a->ino, 1);
    dirs_[kRootIno].entries[name] = Entry{true, a->ino};
    dirs_[a->ino] = Dir{kRootIno, name, true, {}};
  }
  Status s = fs_.fsyncdir(kRootIno, false);
  if (!s.ok()) return std::string("fsyncdir /: ") + std::strerror(s.error());
  return "";
}

std::string CrashWorkload::path_of(uint64_t dir, const std::string& name) const {
  std::string p = name;
  for (uint64_t d = dir; d != kRootIno; d = dirs_.at(d).parent) p = dirs_.at(d).name + "/" + p;
  return p;
}

uint64_t CrashWorkload::pick_dir() {
  auto it = dirs_.begin();
  std::advance(it, rng_() % dirs_.size());
  return it->first;
}

bool CrashWorkload::pick_file_name(uint64_t* dir, std::string* name, bool or_symlink) {
  std::vector<std::pair<uint64_t, std::string>> all;
  for (const auto& [d, dd] : dirs_)
    for (const auto& [n, e] : dd.entries)
      if (!e.dir && (or_symlink || !files_.at(e.ino).symlink)) all.emplace_back(d, n);
  if (all.empty()) return false;
  auto& pick = all[rng_() % all.size()];
  *dir = pick.first;
  *name = pick.second;
  return true;
}

std::vector<std::pair<CrashWorkload::Name, std::string>> CrashWorkload::stable_links_of(
    uint64_t ino) const {
  std::vector<std::pair<Name, std::string>> out;
  for (const auto& [d, dd] : dirs_) {
    if (!dd.stable) continue;
    for (const auto& [n, e] : dd.entries)
      if (!e.dir && e.ino == ino) out.push_back({Name{d, n}, path_of(d, n)});
  }
  return out;
}

void CrashWorkload::drop_link(uint64_t ino, size_t pos) {
  (void)pos;
  File& f = files_.at(ino);
  if (--f.nlink == 0 && !f.open_orphan) {
    files_.erase(ino);
    oracle_.forget_inode(ino);
  }
}

std::string CrashWorkload::fill(size_t len) {
  std::string s(len, '\0');
  uint64_t x = rng_();
  for (size_t i = 0; i < len; i += 8) {
    x += 0x9e3779b97f4a7c15ull;  // splitmix64
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    std::memcpy(s.data() + i, &z, std::min<size_t>(8, len - i));
  }
  return s;
}

bool CrashWorkload::op_create() {
  uint64_t dir = pick_dir();
  std::string name = "f" + std::to_string(rng_() % kFileNames);
  if (dirs_[dir].entries.count(name)) return false;
  oracle_.name_changing({dir, name}, pos_());
  auto a = fs_.mknod(dir, name, S_IFREG | 0644, 0, {});
  if (!a.ok()) return fail("create " + path_of(dir, name), a.error());
  fs_.forget(a->ino, 1);
  dirs_[dir].entries[name] = Entry{false, a->ino};
  files_[a->ino] = File{};
  return true;
}

bool CrashWorkload::op_write() {
  uint64_t dir;
  std::string name;
  if (!pick_file_name(&dir, &name)) return false;
  uint64_t ino = dirs_[dir].entries[name].ino;
  File& f = files_.at(ino);
  size_t len;
  switch (rng_() % 4) {
    case 0: len = 1 + rng_() % 300; break;
    case 1: len = kBlockSize; break;
    case 2: len = kBlockSize * (2 + rng_() % 15); break;
    default: len = 1 + rng_() % (40 * 1024); break;
  }
  uint64_t size = f.data.size();
  uint64_t off;
  switch (rng_() % 5) {
    case 0:
    case 1: off = size; break;                                     // append
    case 2: off = rng_() % (size + 1); break;                      // overwrite
    case 3: off = (rng_() % (size / kBlockSize + 1)) * kBlockSize; break;  // aligned
    default: off = size + rng_() % (20 * 1024); break;             // leaves a hole
  }
  if (len > kMaxFile) len = kMaxFile;
  if (off + len > kMaxFile) off = kMaxFile - len;
  std::string data = fill(len);
  oracle_.content_changing(ino, pos_());
  auto w = fs_.write(ino, off, data.data(), len);
  if (!w.ok()) return fail("write " + path_of(dir, name), w.error());
  if (*w != len) return fail("short write " + path_of(dir, name), EIO);
  if (f.data.size() < off + len) f.data.resize(off + len, '\0');
  std::memcpy(f.data.data() + off, data.data(), len);
  return true;
}

bool CrashWorkload::op_truncate() {
  uint64_t dir;
  std::string name;
  if (!pick_file_name(&dir, &name)) return false;
  uint64_t ino = dirs_[dir].entries[name].ino;
  File& f = files_.at(ino);
  uint64_t size = std::min<uint64_t>(rng_() % (f.data.size() + 8192), kMaxFile);
  oracle_.content_changing(ino, pos_());
  SetAttr sa;
  sa.size = size;
  auto a = fs_.setattr(ino, sa);
  if (!a.ok()) return fail("truncate " + path_of(dir, name), a.error());
  f.data.resize(size, '\0');
  return true;
}

bool CrashWorkload::op_rename_file() {
  uint64_t sdir;
  std::string sname;
  if (!pick_file_name(&sdir, &sname, true)) return false;
  uint64_t ddir = pick_dir();
  std::string dname = "f" + std::to_string(rng_() % kFileNames);
  if (sdir == ddir && sname == dname) return false;
  auto& dents = dirs_[ddir].entries;
  if (dents.count(dname) && dents[dname].dir) return false;
  uint64_t ino = dirs_[sdir].entries[sname].ino;
  // Renaming onto another link of the same inode is a POSIX no-op: skip it.
  if (dents.count(dname) && dents[dname].ino == ino) return false;
  size_t pos = pos_();
  oracle_.name_changing({sdir, sname}, pos);
  oracle_.name_changing({ddir, dname}, pos);
  Status s = fs_.rename(sdir, sname, ddir, dname, 0, Creds{});
  if (!s.ok()) return fail("rename " + path_of(sdir, sname) + " " + path_of(ddir, dname),
                           s.error());
  if (dents.count(dname)) drop_link(dents[dname].ino, pos);
  dirs_[sdir].entries.erase(sname);
  dents[dname] = Entry{false, ino};
  return true;
}

bool CrashWorkload::op_link() {
  uint64_t sdir;
  std::string sname;
  if (!pick_file_name(&sdir, &sname)) return false;
  uint64_t ddir = pick_dir();
  std::string dname = "f" + std::to_string(rng_() % kFileNames);
  if (dirs_[ddir].entries.count(dname)) return false;
  uint64_t ino = dirs_[sdir].entries[sname].ino;
  oracle_.name_changing({ddir, dname}, pos_());
  auto a = fs_.link(ino, ddir, dname);
  if (!a.ok()) return fail("link " + path_of(sdir, sname) + " " + path_of(ddir, dname),
                           a.error());
  fs_.forget(a->ino, 1);
  dirs_[ddir].entries[dname] = Entry{false, ino};
  files_.at(ino).nlink++;
  return true;
}

bool CrashWorkload::op_unlink() {
  uint64_t dir;
  std::string name;
  if (!pick_file_name(&dir, &name, true)) return false;
  uint64_t ino = dirs_[dir].entries[name].ino;
  File& f = files_.at(ino);
  // Sometimes keep the last link's inode open: an orphan that is written,
  // fsync'd and finally closed, possibly after the crash point.
  bool keep_open = f.nlink == 1 && !f.open_orphan && rng_() % 3 == 0;
  if (keep_open) {
    auto a = fs_.lookup(dir, name);
    if (!a.ok()) return fail("lookup " + path_of(dir, name), a.error());
    f.open_orphan = true;
  }
  size_t pos = pos_();
  oracle_.name_changing({dir, name}, pos);
  Status s = fs_.unlink(dir, name);
  if (!s.ok()) return fail("unlink " + path_of(dir, name), s.error());
  dirs_[dir].entries.erase(name);
  drop_link(ino, pos);
  return true;
}

bool CrashWorkload::op_close_orphan() {
  for (auto& [ino, f] : files_) {
    if (!f.open_orphan) continue;
    f.open_orphan = false;
    fs_.forget(ino, 1);
    if (f.nlink == 0) {
      oracle_.forget_inode(ino);
      files_.erase(ino);
    }
    return true;
  }
  return false;
}

bool CrashWorkload::op_mkdir() {
  std::vector<uint64_t> parents;
  for (const auto& [d, dd] : dirs_)
    if (dd.stable) parents.push_back(d);
  uint64_t parent = parents[rng_() % parents.size()];
  std::string name = "t" + std::to_string(rng_() % kDirNames);
  if (dirs_[parent].entries.count(name)) return false;
  oracle_.name_changing({parent, name}, pos_());
  auto a = fs_.mkdir(parent, name, S_IFDIR | 0755, {});
  if (!a.ok()) return fail("mkdir " + path_of(parent, name), a.error());
  fs_.forget(a->ino, 1);
  dirs_[parent].entries[name] = Entry{true, a->ino};
  dirs_[a->ino] = Dir{parent, name, false, {}};
  return true;
}

bool CrashWorkload::op_rmdir() {
  for (auto& [d, dd] : dirs_) {
    if (dd.stable || !dd.entries.empty() || rng_() % 2) continue;
    uint64_t parent = dd.parent;
    std::string name = dd.name;
    oracle_.name_changing({parent, name}, pos_());
    Status s = fs_.rmdir(parent, name);
    if (!s.ok()) return fail("rmdir " + path_of(parent, name), s.error());
    dirs_[parent].entries.erase(name);
    dirs_.erase(d);
    return true;
  }
  return false;
}

bool CrashWorkload::op_rename_dir() {
  std::vector<uint64_t> movable, parents;
  for (const auto& [d, dd] : dirs_) (dd.stable ? parents : movable).push_back(d);
  if (movable.empty()) return false;
  uint64_t d = movable[rng_() % movable.size()];
  uint64_t np = parents[rng_() % parents.size()];
  std::string nn = "t" + std::to_string(rng_() % kDirNames);
  if (dirs_[np].entries.count(nn)) return false;
  Dir& dd = dirs_[d];
  size_t pos = pos_();
  oracle_.name_changing({dd.parent, dd.name}, pos);
  oracle_.name_changing({np, nn}, pos);
  Status s = fs_.rename(dd.parent, dd.name, np, nn, 0, Creds{});
  if (!s.ok()) return fail("rename dir " + path_of(dd.parent, dd.name), s.error());
  dirs_[dd.parent].entries.erase(dd.name);
  dirs_[np].entries[nn] = Entry{true, d};
  dd.parent = np;
  dd.name = nn;
  return true;
}

bool CrashWorkload::op_setxattr() {
  uint64_t dir;
  std::string name;
  if (!pick_file_name(&dir, &name)) return false;
  uint64_t ino = dirs_[dir].entries[name].ino;
  std::string key = rng_() % 2 ? "user.a" : "user.b";
  std::string value = fill(1 + rng_() % 64);
  oracle_.content_changing(ino, pos_());
  Status s = fs_.setxattr(ino, key, value, 0);
  if (!s.ok()) return fail("setxattr " + path_of(dir, name), s.error());
  files_.at(ino).xattrs[key] = value;
  return true;
}

bool CrashWorkload::op_fsync() {
  std::vector<uint64_t> inos;
  for (const auto& [ino, f] : files_)
    if (!f.symlink) inos.push_back(ino);
  if (inos.empty()) return false;
  uint64_t ino = inos[rng_() % inos.size()];
  bool datasync = rng_() % 3 == 0;
  Status s = fs_.fsync(ino, datasync);
  if (!s.ok()) return fail("fsync ino " + std::to_string(ino), s.error());
  oracle_.content_synced(ino, files_.at(ino).image(), stable_links_of(ino), pos_());
  return true;
}

bool CrashWorkload::op_fsyncdir() {
  uint64_t dir = pick_dir();
  Status s = fs_.fsyncdir(dir, rng_() % 3 == 0);
  if (!s.ok()) return fail("fsyncdir " + path_of(dir, "."), s.error());
  if (!dirs_[dir].stable) return true;
  std::vector<std::pair<Name, std::string>> names;
  std::vector<uint64_t> inos;
  for (const auto& [n, e] : dirs_[dir].entries) {
    if (e.dir) continue;
    names.push_back({Name{dir, n}, path_of(dir, n)});
    inos.push_back(e.ino);
  }
  oracle_.names_synced(names, inos, pos_());
  return true;
}

bool CrashWorkload::op_fsync_then_dir() {
  uint64_t dir;
  std::string name;
  if (!pick_file_name(&dir, &name) || !dirs_[dir].stable) return false;
  uint64_t ino = dirs_[dir].entries[name].ino;
  Status s = fs_.fsync(ino, false);
  if (!s.ok()) return fail("fsync " + path_of(dir, name), s.error());
  oracle_.content_synced(ino, files_.at(ino).image(), stable_links_of(ino), pos_());
  s = fs_.fsyncdir(dir, false);
  if (!s.ok()) return fail("fsyncdir " + path_of(dir, "."), s.error());
  oracle_.names_synced({{Name{dir, name}, path_of(dir, name)}}, {ino}, pos_());
  return true;
}

bool CrashWorkload::op_symlink() {
  uint64_t dir = pick_dir();
  std::string name = "s" + std::to_string(rng_() % kSymlinkNames);
  if (dirs_[dir].entries.count(name)) return false;
  // Half short (inline in the inode), half long (a data block of their own).
  size_t len = rng_() % 2 ? 1 + rng_() % 100 : 200 + rng_() % 3800;
  std::string target(len, '\0');
  for (char& c : target) c = char('a' + rng_() % 26);
  target[0] = '/';
  oracle_.name_changing({dir, name}, pos_());
  auto a = fs_.symlink(dir, name, target, {});
  if (!a.ok()) return fail("symlink " + path_of(dir, name), a.error());
  fs_.forget(a->ino, 1);
  dirs_[dir].entries[name] = Entry{false, a->ino};
  File& f = files_[a->ino];
  f.data = target;
  f.symlink = true;
  // The target is part of the inode: durable as soon as the name is.
  oracle_.content_synced(a->ino, f.image(), stable_links_of(a->ino), pos_());
  return true;
}

bool CrashWorkload::op_read() {
  uint64_t dir;
  std::string name;
  if (!pick_file_name(&dir, &name)) return false;
  const File& f = files_.at(dirs_[dir].entries[name].ino);
  std::string got(f.data.size() + 100, '\0');
  auto r = fs_.read(dirs_[dir].entries[name].ino, 0, got.size(), got.data());
  if (!r.ok()) return fail("read " + path_of(dir, name), r.error());
  got.resize(*r);
  if (got != f.data) return fail("read back differs from the model: " + path_of(dir, name), EIO);
  return true;
}

std::string CrashWorkload::run(int n) {
  struct Op {
    const char* name;
    bool (CrashWorkload::*fn)();
    int weight;
  };
  static const Op kOps[] = {
      {"write", &CrashWorkload::op_write, 24},      {"create", &CrashWorkload::op_create, 9},
      {"truncate", &CrashWorkload::op_truncate, 5}, {"rename", &CrashWorkload::op_rename_file, 8},
      {"link", &CrashWorkload::op_link, 3},         {"unlink", &CrashWorkload::op_unlink, 6},
      {"mkdir", &CrashWorkload::op_mkdir, 3},       {"rmdir", &CrashWorkload::op_rmdir, 2},
      {"rename_dir", &CrashWorkload::op_rename_dir, 2},
      {"setxattr", &CrashWorkload::op_setxattr, 4}, {"fsync", &CrashWorkload::op_fsync, 12},
      {"fsyncdir", &CrashWorkload::op_fsyncdir, 6},
      {"fsync+fsyncdir", &CrashWorkload::op_fsync_then_dir, 5}, {"close", &CrashWorkload::op_close_orphan, 2},
      {"read", &CrashWorkload::op_read, 4},        {"symlink", &CrashWorkload::op_symlink, 4},
  };
  int total = 0;
  for (const auto& o : kOps) total += o.weight;
  for (int i = 0; i < n && err_.empty(); i++) {
    opno_ = int(stats_.total);
    for (;;) {
      int r = int(rng_() % total);
      const Op* op = kOps;
      while (r >= op->weight) r -= (op++)->weight;
      if ((this->*op->fn)()) {
        stats_.ops[op->name]++;
        stats_.total++;
        break;
      }
    }
  }
  return err_;
}

std::string CrashWorkload::verify_dir(uint64_t dir) {
  std::set<std::string> seen;
  Status s = fs_.readdir(dir, 0, [&](const DirListEntry& e) {
    if (e.name != "." && e.name != "..") seen.insert(e.name);
    return true;
  });
  std::string where = path_of(dir, ".");
  if (!s.ok()) return "readdir " + where + ": " + std::strerror(s.error());
  std::set<std::string> want;
  for (const auto& [n, e] : dirs_[dir].entries) want.insert(n);
  if (seen != want) return "readdir " + where + " differs from the model";
  for (const auto& [n, e] : dirs_[dir].entries) {
    if (e.dir) {
      std::string r = verify_dir(e.ino);
      if (!r.empty()) return r;
      continue;
    }
    std::string r = verify_inode(e.ino, files_.at(e.ino), path_of(dir, n));
    if (!r.empty()) return r;
  }
  return "";
}

std::string CrashWorkload::verify_inode(uint64_t ino, const File& f, const std::string& path) {
  if (f.symlink) {
    auto t = fs_.readlink(ino);
    if (!t.ok()) return "readlink " + path + ": " + std::strerror(t.error());
    if (*t != f.data) return "target of " + path + " differs from the model";
    return "";
  }
  std::string got(f.data.size() + 100, '\0');
  auto rd = fs_.read(ino, 0, got.size(), got.data());
  if (!rd.ok()) return "read " + path + ": " + std::strerror(rd.error());
  got.resize(*rd);
  if (got != f.data) return "content of " + path + " differs from the model";
  for (const auto& [k, v] : f.xattrs) {
    auto x = fs_.getxattr(ino, k);
    if (!x.ok()) return "getxattr " + path + " " + k + ": " + std::strerror(x.error());
    if (*x != v) return "xattr " + k + " of " + path + " differs from the model";
  }
  return "";
}

std::string CrashWorkload::verify_all() { return verify_dir(kRootIno); }

}  // namespace stablefs::crash
