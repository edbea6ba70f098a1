#include "tests/crash/kill_workload.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <vector>

namespace stablefs::crash {
namespace {

constexpr size_t kMaxFile = 96 * 1024;
const char* const kDirs[] = {"a", "b"};

class Workload {
 public:
  Workload(std::string root, int journal, uint64_t seed) : root_(std::move(root)), journal_(journal), rng_(seed) {}
  [[noreturn]] void run(int progress_fd);

 private:
  std::string rel(int dir, int f) const { return std::string(kDirs[dir]) + "/f" + std::to_string(f); }
  std::string abs(const std::string& r) const { return root_ + "/" + r; }
  void record(const std::string& line) {
    // The journal lives on a kernel filesystem: a write is enough, since
    // only the daemon dies, never this process's kernel.
    std::string l = line + "\n";
    if (::write(journal_, l.data(), l.size()) != ssize_t(l.size())) _exit(2);
  }
  void dirty(const std::string& r) { record("D " + r); }
  [[noreturn]] void gone() { _exit(0); }  // the daemon was killed
  void check(bool ok) {
    if (!ok) gone();
  }
  std::string fill(size_t n) {
    std::string s(n, '\0');
    uint64_t x = rng_();
    for (size_t i = 0; i < n; i++) s[i] = char((x >> (8 * (i % 8))) + i / 8 * 37);
    return s;
  }
  void make_durable(const std::string& r, int fd, int how);
  void op();
  void symlink_op();

  std::string root_;
  int journal_;
  std::mt19937_64 rng_;
  std::map<std::string, std::string> files_;  // rel path -> content
};

// how: 0 fsync, 1 fdatasync, 2 (content already msync'd) only the directory.
void Workload::make_durable(const std::string& r, int fd, int how) {
  if (how == 0) check(fsync(fd) == 0);
  if (how == 1) check(fdatasync(fd) == 0);
  int dfd = open(abs(r.substr(0, r.find('/'))).c_str(), O_RDONLY | O_DIRECTORY);
  check(dfd >= 0);
  check(fsync(dfd) == 0);
  close(dfd);
  const std::string& c = files_[r];
  record("S " + r + " " + std::to_string(c.size()) + " " + std::to_string(content_hash(c)));
}

// A symlink, short (inline) or long (its own block), made durable by an
// fsync of its directory alone: the target is part of the inode.
void Workload::symlink_op() {
  std::string r = std::string(kDirs[rng_() % 2]) + "/l" + std::to_string(rng_() % 4);
  dirty(r);
  if (unlink(abs(r).c_str()) != 0) check(errno == ENOENT);
  std::string target(rng_() % 2 ? 1 + rng_() % 100 : 200 + rng_() % 3800, 'x');
  for (char& c : target) c = char('a' + rng_() % 26);
  check(symlink(target.c_str(), abs(r).c_str()) == 0);
  int dfd = open(abs(r.substr(0, 1)).c_str(), O_RDONLY | O_DIRECTORY);
  check(dfd >= 0);
  check(fsync(dfd) == 0);
  close(dfd);
  record("L " + r + " " + std::to_string(target.size()) + " " +
         std::to_string(content_hash(target)));
}

void Workload::op() {
  if (rng_() % 100 < 8) return symlink_op();
  int d = int(rng_() % 2), f = int(rng_() % 6);
  std::string r = rel(d, f);
  bool exists = files_.count(r) > 0;
  unsigned kind = rng_() % 100;
  if (!exists || kind < 10) {  // create (or recreate with O_TRUNC) and write
    dirty(r);
    int fd = open(abs(r).c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
    check(fd >= 0);
    std::string data = fill(1 + rng_() % 20000);
    files_[r] = "";
    check(pwrite(fd, data.data(), data.size(), 0) == ssize_t(data.size()));
    files_[r] = data;
    if (rng_() % 2) make_durable(r, fd, int(rng_() % 2));
    close(fd);
    return;
  }
  std::string& c = files_[r];
  if (kind < 45) {  // write: append, overwrite or beyond the end
    uint64_t off = rng_() % 3 == 0 ? c.size() : rng_() % (c.size() + 8192);
    std::string data = fill(1 + rng_() % (rng_() % 4 == 0 ? 40000 : 3000));
    if (off + data.size() > kMaxFile) off = kMaxFile - data.size();
    dirty(r);
    int fd = open(abs(r).c_str(), O_WRONLY);
    check(fd >= 0);
    check(pwrite(fd, data.data(), data.size(), off) == ssize_t(data.size()));
    if (c.size() < off + data.size()) c.resize(off + data.size(), '\0');
    std::memcpy(c.data() + off, data.data(), data.size());
    if (rng_() % 3 == 0) make_durable(r, fd, int(rng_() % 2));
    close(fd);
  } else if (kind < 52) {  // truncate
    uint64_t size = rng_() % (c.size() + 4096);
    dirty(r);
    check(truncate(abs(r).c_str(), off_t(size)) == 0);
    c.resize(size, '\0');
  } else if (kind < 62) {  // mmap store + msync
    if (c.empty()) return;
    dirty(r);
    int fd = open(abs(r).c_str(), O_RDWR);
    check(fd >= 0);
    void* m = mmap(nullptr, c.size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    check(m != MAP_FAILED);
    size_t off = rng_() % c.size();
    std::string data = fill(std::min<size_t>(c.size() - off, 1 + rng_() % 9000));
    std::memcpy(static_cast<char*>(m) + off, data.data(), data.size());
    std::memcpy(c.data() + off, data.data(), data.size());
    check(msync(m, c.size(), MS_SYNC) == 0);
    munmap(m, c.size());
    make_durable(r, fd, 2);
    close(fd);
  } else if (kind < 72) {  // rename, maybe over an existing file
    std::string to = rel(int(rng_() % 2), int(rng_() % 6));
    if (to == r) return;
    dirty(r);
    dirty(to);
    check(rename(abs(r).c_str(), abs(to).c_str()) == 0);
    files_[to] = c;
    files_.erase(r);
    if (rng_() % 2) {
      int fd = open(abs(to).c_str(), O_RDONLY);
      check(fd >= 0);
      make_durable(to, fd, 0);
      if (to.substr(0, 1) != r.substr(0, 1)) {  // the old name's directory too
        int dfd = open(abs(r.substr(0, 1)).c_str(), O_RDONLY | O_DIRECTORY);
        check(dfd >= 0);
        check(fsync(dfd) == 0);
        close(dfd);
      }
      close(fd);
    }
  } else if (kind < 78) {  // unlink
    dirty(r);
    check(unlink(abs(r).c_str()) == 0);
    files_.erase(r);
  } else {  // make durable as it is
    int fd = open(abs(r).c_str(), O_RDONLY);
    check(fd >= 0);
    make_durable(r, fd, int(rng_() % 2));
    close(fd);
  }
}

void Workload::run(int progress_fd) {
  for (const char* d : kDirs) {
    std::string p = root_ + "/" + d;
    check(mkdir(p.c_str(), 0755) == 0 || errno == EEXIST);
  }
  int rfd = open(root_.c_str(), O_RDONLY | O_DIRECTORY);
  check(rfd >= 0);
  check(fsync(rfd) == 0);
  close(rfd);
  for (;;) {
    op();
    char b = 1;
    if (::write(progress_fd, &b, 1) != 1) _exit(0);  // the test stopped listening
  }
}

}  // namespace

uint64_t content_hash(const std::string& data) { return XXH3_64bits(data.data(), data.size()); }

void run_kill_workload(const std::string& root, const std::string& journal_path, uint64_t seed,
                       int progress_fd) {
  // A store into a mapping whose page cannot be read back (the daemon is
  // gone) raises SIGBUS: that is the kill, not a failure.
  signal(SIGBUS, [](int) { _exit(0); });
  signal(SIGPIPE, SIG_IGN);
  int j = open(journal_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (j < 0) _exit(2);
  Workload(root, j, seed).run(progress_fd);
}

std::map<std::string, DurableFile> durable_files(const std::string& journal_text,
                                                 uint64_t* sync_records) {
  std::map<std::string, DurableFile> out;
  std::istringstream in(journal_text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string kind, path;
    ls >> kind >> path;
    if (kind == "D") {
      out.erase(path);
    } else if (kind == "S" || kind == "L") {
      DurableFile f;
      f.symlink = kind == "L";
      ls >> f.size >> f.hash;
      out[path] = f;
      if (sync_records) (*sync_records)++;
    }
  }
  return out;
}

}  // namespace stablefs::crash
