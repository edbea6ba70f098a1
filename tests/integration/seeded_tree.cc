#include "tests/integration/seeded_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <vector>

namespace stablefs::integ {
namespace {

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

// Writes `data` at `offset` of an open file; "" or what failed.
std::string pwrite_all(int fd, const std::string& data, off_t offset, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, offset + off_t(done));
    if (n < 0) return errno_text("pwrite " + path);
    done += size_t(n);
  }
  return "";
}

// Generates the tree and its manifest; every step returns "" or an error.
class TreeBuilder {
 public:
  TreeBuilder(std::string root, uint64_t seed, TreeManifest& m)
      : root_(std::move(root)), rng_(seed), m_(m) {}

  std::string build() {
    for (auto step : {&TreeBuilder::sizes, &TreeBuilder::sparse, &TreeBuilder::names,
                      &TreeBuilder::symlinks, &TreeBuilder::hard_links, &TreeBuilder::fifos,
                      &TreeBuilder::xattrs, &TreeBuilder::modes_and_owners, &TreeBuilder::bulk}) {
      std::string e = (this->*step)();
      if (!e.empty()) return e;
    }
    return finish();
  }

 private:
  std::string abs(const std::string& rel) const { return root_ + "/" + rel; }

  std::string random_bytes(size_t n) {
    std::string s(n, '\0');
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t v = rng_();
      std::memcpy(s.data() + i, &v, 8);
    }
    for (; i < n; i++) s[i] = char(rng_());
    return s;
  }

  // A distinct time in 2017..2020 with nanoseconds.
  timespec random_time() {
    return timespec{time_t(1500000000 + rng_() % 100000000), long(rng_() % 1000000000)};
  }

  TreeEntry& add(const std::string& rel, char type, mode_t mode) {
    TreeEntry& e = m_[rel];
    e.type = type;
    e.mode = mode;
    e.mtime = random_time();
    auto slash = rel.rfind('/');
    if (type == 'd' && slash != std::string::npos) m_[rel.substr(0, slash)].nlink++;
    if (type == 'd') e.nlink = 2;
    return e;
  }

  std::string dir(const std::string& rel, mode_t mode = 0755) {
    if (::mkdir(abs(rel).c_str(), 0700) != 0) return errno_text("mkdir " + rel);
    add(rel, 'd', mode);
    return "";
  }

  // A regular file of `size` bytes whose `pieces` (offset, bytes) are data
  // and the rest holes.
  std::string file(const std::string& rel, uint64_t size,
                   const std::vector<std::pair<uint64_t, std::string>>& pieces,
                   mode_t mode = 0644, uint64_t max_allocated = 0) {
    int fd = ::open(abs(rel).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return errno_text("create " + rel);
    std::string image(size, '\0');
    std::string e;
    for (const auto& [off, bytes] : pieces) {
      if (e.empty()) e = pwrite_all(fd, bytes, off_t(off), rel);
      std::memcpy(image.data() + off, bytes.data(), bytes.size());
    }
    if (e.empty() && ::ftruncate(fd, off_t(size)) != 0) e = errno_text("ftruncate " + rel);
    if (::close(fd) != 0 && e.empty()) e = errno_text("close " + rel);
    if (!e.empty()) return e;
    TreeEntry& t = add(rel, 'f', mode);
    t.size = size;
    t.hash = XXH3_64bits(image.data(), image.size());
    t.max_allocated = max_allocated;
    return "";
  }

  std::string dense(const std::string& rel, uint64_t size, mode_t mode = 0644) {
    return file(rel, size, {{0, random_bytes(size)}}, mode);
  }

  std::string symlink(const std::string& rel, const std::string& target) {
    if (::symlink(target.c_str(), abs(rel).c_str()) != 0) return errno_text("symlink " + rel);
    TreeEntry& t = add(rel, 'l', 0777);
    t.size = target.size();
    t.target = target;
    return "";
  }

  // A path-like target of exactly n bytes that resolves to nothing.
  std::string dangling_target(size_t n) {
    std::string s;
    while (s.size() < n) {
      size_t part = 1 + rng_() % 40;
      s += std::string(std::min(part, n - s.size()), char('a' + rng_() % 26));
      if (s.size() < n) s += '/';
    }
    return s;
  }

  std::string link(const std::string& existing, const std::string& rel) {
    if (::link(abs(existing).c_str(), abs(rel).c_str()) != 0) return errno_text("link " + rel);
    TreeEntry& first = m_[existing];
    if (first.link_group.empty()) first.link_group = existing;
    const nlink_t links = first.nlink + 1;
    m_[rel] = first;  // same inode: same everything
    for (auto& [p, e] : m_)
      if (e.link_group == first.link_group) e.nlink = links;
    return "";
  }

  std::string sizes() {
    if (auto e = dir("sizes"); !e.empty()) return e;
    for (uint64_t n : {0ull, 1ull, 2ull, 511ull, 512ull, 4095ull, 4096ull, 4097ull, 8191ull,
                       8192ull, 8193ull, 12288ull, 65535ull, 65536ull, 65537ull, 131073ull,
                       (1ull << 20) - 1, 1ull << 20, (1ull << 20) + 1, 3 * (1ull << 20) + 17})
      if (auto e = dense("sizes/" + std::to_string(n), n); !e.empty()) return e;
    return "";
  }

  std::string sparse() {
    if (auto e = dir("sparse"); !e.empty()) return e;
    const uint64_t MiB = 1 << 20;
    struct Case {
      const char* name;
      uint64_t size;
      std::vector<std::pair<uint64_t, size_t>> data;  // offset, length
      uint64_t max_allocated;
    };
    const Case cases[] = {
        {"leading_hole", MiB + 4096, {{MiB, 4096}}, 0},
        {"inner_hole", 8 * MiB + 4096, {{0, 4096}, {8 * MiB, 4096}}, MiB},
        {"trailing_hole", 16 * MiB, {{0, 10000}}, MiB},
        {"all_hole", 5 * MiB, {}, MiB},
        {"unaligned", 200000, {{5000, 100}, {70000, 1}, {131071, 2}}, 0},
    };
    for (const Case& c : cases) {
      std::vector<std::pair<uint64_t, std::string>> pieces;
      for (auto [off, len] : c.data) pieces.emplace_back(off, random_bytes(len));
      if (auto e = file(std::string("sparse/") + c.name, c.size, pieces, 0644, c.max_allocated);
          !e.empty())
        return e;
    }
    return "";
  }

  std::string names() {
    if (auto e = dir("names"); !e.empty()) return e;
    const std::string long_dir = "names/" + std::string(250, 'D') + "-dir1";  // 255 bytes
    if (auto e = dir(long_dir); !e.empty()) return e;
    for (const std::string& n :
         {std::string(255, 'n'), std::string(254, 'm') + "x", std::string("with space"),
          std::string("tab\tand\nnewline"), std::string("-dash"), std::string("..."),
          std::string("\xc3\xbc" "n" "\xc3\xaf" "c" "\xc3\xb8" "d" "\xc3\xa9"
                      "-\xe5\x90\x8d\xe5\x89\x8d"),  // "ünïcødé-名前" in UTF-8
          std::string("#%&'()*+,;=@[]^`{}~$!")})
      if (auto e = dense("names/" + n, rng_() % 5000); !e.empty()) return e;
    return dense(long_dir + "/" + std::string(255, 'f'), 4097);
  }

  std::string symlinks() {
    if (auto e = dir("links"); !e.empty()) return e;
    // 144 bytes is the inline limit: both sides of it, and block targets
    // up to 4000 bytes.
    for (size_t n : {1u, 10u, 143u, 144u, 145u, 200u, 1000u, 4000u})
      if (auto e = symlink("links/dangling_" + std::to_string(n), dangling_target(n)); !e.empty())
        return e;
    if (auto e = symlink("links/to_file", "../sizes/4097"); !e.empty()) return e;
    if (auto e = symlink("links/to_dir", "../sizes"); !e.empty()) return e;
    if (auto e = symlink("links/absolute", "/nonexistent/absolute/target"); !e.empty()) return e;
    std::string longer = std::string(3000, '.');  // ./././... resolving to links/
    for (size_t i = 1; i < longer.size(); i += 2) longer[i] = '/';
    return symlink("links/long_to_file", longer + "/../sizes/1");
  }

  std::string hard_links() {
    for (const char* d : {"hard", "hard/other"})
      if (auto e = dir(d); !e.empty()) return e;
    if (auto e = dense("hard/three", 9000); !e.empty()) return e;
    if (auto e = link("hard/three", "hard/three_b"); !e.empty()) return e;
    if (auto e = link("hard/three", "hard/other/three_c"); !e.empty()) return e;
    if (auto e = dense("hard/empty", 0); !e.empty()) return e;
    return link("hard/empty", "hard/other/empty_b");
  }

  std::string fifos() {
    if (auto e = dir("fifo"); !e.empty()) return e;
    for (auto [name, mode] : {std::pair{"p644", 0644}, std::pair{"p600", 0600}}) {
      std::string rel = std::string("fifo/") + name;
      if (::mkfifo(abs(rel).c_str(), 0600) != 0) return errno_text("mkfifo " + rel);
      add(rel, 'p', mode_t(mode));
    }
    return "";
  }

  std::string xattrs() {
    if (auto e = dir("xattr"); !e.empty()) return e;
    if (auto e = dense("xattr/few", 100); !e.empty()) return e;
    m_["xattr/few"].xattrs = {{"user.empty", ""},
                              {"user.binary", std::string("a\0b\0\xff", 5)},
                              {"user.large", random_bytes(1000)}};
    if (auto e = dense("xattr/many", 10); !e.empty()) return e;
    for (int i = 0; i < 40; i++)
      m_["xattr/many"].xattrs["user.attr" + std::to_string(i)] = random_bytes(rng_() % 40);
    m_["xattr"].xattrs = {{"user.on_a_dir", "yes"}};
    return "";
  }

  std::string modes_and_owners() {
    for (const char* d : {"modes", "modes/sticky", "modes/private", "modes/readonly"})
      if (auto e = dir(d); !e.empty()) return e;
    m_["modes/sticky"].mode = 01777;
    m_["modes/private"].mode = 0700;
    m_["modes/readonly"].mode = 0555;
    for (mode_t mode : {0000, 0400, 0600, 0640, 0755, 04755, 02755, 06750})
      if (auto e = dense("modes/m" + std::to_string(mode), 50, mode); !e.empty()) return e;
    if (auto e = dense("modes/private/inside", 3); !e.empty()) return e;
    if (auto e = dir("owners"); !e.empty()) return e;
    for (auto [uid, gid] :
         {std::pair{1234u, 5678u}, std::pair{0u, 100u}, std::pair{65534u, 65534u}}) {
      std::string rel = "owners/u" + std::to_string(uid) + "g" + std::to_string(gid);
      if (auto e = dense(rel, 20); !e.empty()) return e;
      m_[rel].uid = uid;
      m_[rel].gid = gid;
    }
    m_["owners"].uid = 4321;
    if (auto e = symlink("owners/link", "u0g100"); !e.empty()) return e;
    m_["owners/link"].uid = 1234;
    m_["owners/link"].gid = 5678;
    return "";
  }

  // Enough small files and directories that a 1 MiB metadata cache cannot
  // hold their inodes and directory blocks.
  std::string bulk() {
    if (auto e = dir("bulk"); !e.empty()) return e;
    for (int d = 0; d < 40; d++) {
      std::string dd = "bulk/d" + std::to_string(d);
      if (auto e = dir(dd); !e.empty()) return e;
      for (int f = 0; f < 60; f++)
        if (auto e = dense(dd + "/f" + std::to_string(f), rng_() % 3000); !e.empty()) return e;
    }
    std::string deep = "bulk/deep";
    if (auto e = dir(deep); !e.empty()) return e;
    for (int i = 0; i < 16; i++) {
      deep += "/d" + std::to_string(i);
      if (auto e = dir(deep); !e.empty()) return e;
    }
    return dense(deep + "/bottom", 4096);
  }

  // Xattrs, owners, modes and times, children before their parents (a
  // child's creation moves its parent's mtime), each inode's once.
  std::string finish() {
    std::vector<std::string> paths;
    for (auto& [p, e] : m_) paths.push_back(p);
    std::stable_sort(paths.begin(), paths.end(), [](const std::string& a, const std::string& b) {
      return std::count(a.begin(), a.end(), '/') > std::count(b.begin(), b.end(), '/');
    });
    std::set<std::string> done_groups;
    for (const std::string& rel : paths) {
      TreeEntry& e = m_[rel];
      if (!e.link_group.empty() && !done_groups.insert(e.link_group).second) continue;
      if (auto err = apply(rel, e); !err.empty()) return err;
    }
    // Hard links share the inode: their entries carry the group's values.
    for (auto& [p, e] : m_)
      if (!e.link_group.empty()) {
        const TreeEntry& first = m_[e.link_group];
        e.mtime = first.mtime;
        e.xattrs = first.xattrs;
      }
    return "";
  }

  std::string apply(const std::string& rel, const TreeEntry& e) {
    const std::string p = abs(rel);
    for (auto& [k, v] : e.xattrs)
      if (::lsetxattr(p.c_str(), k.c_str(), v.data(), v.size(), 0) != 0)
        return errno_text("lsetxattr " + k + " on " + rel);
    if (::lchown(p.c_str(), e.uid, e.gid) != 0) return errno_text("lchown " + rel);
    // After chown, which clears setuid and setgid.
    if (e.type != 'l' && ::chmod(p.c_str(), e.mode) != 0) return errno_text("chmod " + rel);
    timespec times[2] = {e.mtime, e.mtime};
    if (::utimensat(AT_FDCWD, p.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0)
      return errno_text("utimensat " + rel);
    return "";
  }

  std::string root_;
  std::mt19937_64 rng_;
  TreeManifest& m_;
};

// Every path under root (relative), lstat'ed, directories included.
std::string walk(const std::string& root, const std::string& rel, std::set<std::string>* out) {
  const std::string p = rel.empty() ? root : root + "/" + rel;
  DIR* d = ::opendir(p.c_str());
  if (d == nullptr) return errno_text("opendir " + p);
  std::vector<std::pair<std::string, unsigned char>> children;
  errno = 0;
  while (dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n != "." && n != "..") children.emplace_back(n, de->d_type);
    errno = 0;
  }
  int e = errno;
  ::closedir(d);
  if (e != 0) return "readdir " + p + ": " + std::strerror(e);
  for (auto& [n, type] : children) {
    std::string c = rel.empty() ? n : rel + "/" + n;
    out->insert(c);
    struct stat st;
    if (type == DT_UNKNOWN && ::lstat((root + "/" + c).c_str(), &st) == 0 && S_ISDIR(st.st_mode))
      type = DT_DIR;
    if (type == DT_DIR)
      if (auto err = walk(root, c, out); !err.empty()) return err;
  }
  return "";
}

// The file's bytes, hashed, and the number of bytes read.
bool hash_contents(const std::string& p, uint64_t* hash, uint64_t* bytes, std::string* why) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *why = errno_text("open");
    return false;
  }
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  std::vector<char> buf(1 << 20);
  *bytes = 0;
  bool ok = true;
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      *why = errno_text("read");
      ok = false;
      break;
    }
    if (n == 0) break;
    XXH3_64bits_update(st, buf.data(), size_t(n));
    *bytes += uint64_t(n);
  }
  *hash = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  ::close(fd);
  return ok;
}

std::map<std::string, std::string> read_xattrs(const std::string& p, std::string* why) {
  std::map<std::string, std::string> out;
  ssize_t n = ::llistxattr(p.c_str(), nullptr, 0);
  if (n < 0) {
    *why = errno_text("llistxattr");
    return out;
  }
  std::string names(size_t(n), '\0');
  n = ::llistxattr(p.c_str(), names.data(), names.size());
  if (n < 0) {
    *why = errno_text("llistxattr");
    return out;
  }
  names.resize(size_t(n));
  for (size_t at = 0; at < names.size();) {
    std::string k = names.c_str() + at;
    at += k.size() + 1;
    ssize_t vl = ::lgetxattr(p.c_str(), k.c_str(), nullptr, 0);
    std::string v(vl > 0 ? size_t(vl) : 0, '\0');
    if (vl < 0 || (vl > 0 && ::lgetxattr(p.c_str(), k.c_str(), v.data(), v.size()) != vl)) {
      *why = errno_text("lgetxattr " + k);
      return out;
    }
    out[k] = v;
  }
  return out;
}

char type_of(mode_t m) {
  if (S_ISREG(m)) return 'f';
  if (S_ISDIR(m)) return 'd';
  if (S_ISLNK(m)) return 'l';
  if (S_ISFIFO(m)) return 'p';
  return '?';
}

std::string printable(const std::string& rel) {
  std::string out;
  for (unsigned char c : rel.size() > 80 ? rel.substr(0, 60) + "..." : rel)
    out += c < 32 ? '?' : char(c);
  return out;
}

// The differences between one path and its entry ("" when none).
std::string compare_entry(const std::string& root, const std::string& rel, const TreeEntry& want,
                          std::map<std::string, ino_t>* group_inos) {
  const std::string p = root + "/" + rel;
  std::string diff;
  auto differ = [&](const std::string& what, const std::string& got, const std::string& exp) {
    diff += "\n  " + printable(rel) + ": " + what + " " + got + ", want " + exp;
  };
  struct stat st;
  if (::lstat(p.c_str(), &st) != 0) return "\n  " + printable(rel) + ": " + errno_text("lstat");
  if (type_of(st.st_mode) != want.type)
    return "\n  " + printable(rel) + ": type " + type_of(st.st_mode) + ", want " + want.type;
  auto octal = [](mode_t m) {
    char b[16];
    std::snprintf(b, sizeof b, "%04o", unsigned(m));
    return std::string(b);
  };
  if (want.type != 'l' && (st.st_mode & 07777) != want.mode)
    differ("mode", octal(st.st_mode & 07777), octal(want.mode));
  if (st.st_uid != want.uid || st.st_gid != want.gid)
    differ("owner", std::to_string(st.st_uid) + ":" + std::to_string(st.st_gid),
           std::to_string(want.uid) + ":" + std::to_string(want.gid));
  if (st.st_nlink != want.nlink)
    differ("link count", std::to_string(st.st_nlink), std::to_string(want.nlink));
  if (st.st_mtim.tv_sec != want.mtime.tv_sec || st.st_mtim.tv_nsec != want.mtime.tv_nsec)
    differ("mtime", std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec),
           std::to_string(want.mtime.tv_sec) + "." + std::to_string(want.mtime.tv_nsec));
  if (want.type == 'f') {
    if (uint64_t(st.st_size) != want.size)
      differ("size", std::to_string(st.st_size), std::to_string(want.size));
    uint64_t hash = 0, bytes = 0;
    std::string why;
    if (!hash_contents(p, &hash, &bytes, &why))
      diff += "\n  " + printable(rel) + ": " + why;
    else if (bytes != want.size || hash != want.hash)
      differ("content (bytes read)", std::to_string(bytes), "other bytes");
    if (want.max_allocated && uint64_t(st.st_blocks) * 512 > want.max_allocated)
      differ("allocated bytes", std::to_string(uint64_t(st.st_blocks) * 512),
             "at most " + std::to_string(want.max_allocated) + " (holes were filled)");
  }
  if (want.type == 'l') {
    std::string got(8192, '\0');
    ssize_t n = ::readlink(p.c_str(), got.data(), got.size());
    if (n < 0) return diff + "\n  " + printable(rel) + ": " + errno_text("readlink");
    got.resize(size_t(n));
    if (got != want.target)
      differ("symlink target of", std::to_string(got.size()) + " bytes", "the generated one");
    if (uint64_t(st.st_size) != want.size)
      differ("symlink size", std::to_string(st.st_size), std::to_string(want.size));
  }
  std::string why;
  auto xs = read_xattrs(p, &why);
  if (!why.empty()) diff += "\n  " + printable(rel) + ": " + why;
  else if (xs != want.xattrs)
    differ("xattrs", std::to_string(xs.size()) + " names", std::to_string(want.xattrs.size()) +
           " names with the generated values");
  if (!want.link_group.empty()) {
    auto [it, first] = group_inos->emplace(want.link_group, st.st_ino);
    if (!first && it->second != st.st_ino)
      differ("inode", std::to_string(st.st_ino),
             "that of " + printable(want.link_group) + " (a hard link)");
  }
  return diff;
}

}  // namespace

std::string make_seeded_tree(const std::string& root, uint64_t seed, TreeManifest* manifest) {
  manifest->clear();
  TreeBuilder b(root, seed, *manifest);
  return b.build();
}

std::string compare_with_manifest(const std::string& root, const TreeManifest& manifest) {
  std::set<std::string> found;
  if (auto e = walk(root, "", &found); !e.empty()) return e;
  std::string diff;
  int shown = 0;
  auto add = [&](const std::string& d) {
    if (!d.empty() && shown++ < 40) diff += d;
  };
  for (const std::string& p : found)
    if (!manifest.count(p)) add("\n  " + printable(p) + ": not in the manifest");
  std::map<std::string, ino_t> group_inos;
  for (const auto& [p, want] : manifest) {
    if (!found.count(p)) {
      add("\n  " + printable(p) + ": missing");
      continue;
    }
    add(compare_entry(root, p, want, &group_inos));
  }
  if (shown > 40) diff += "\n  ... " + std::to_string(shown - 40) + " more";
  return diff;
}

}  // namespace stablefs::integ
