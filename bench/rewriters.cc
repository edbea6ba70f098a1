// 64 rewriters: processes (not threads, so each has its own fd table and
// the kernel sees independent writers, as with 64 database clients), each
// doing pwrite 4 KiB + fsync at random aligned offsets.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <vector>

#include "bench/clock.h"
#include "bench/workloads.h"

namespace stablefs::bench {

namespace {

constexpr uint64_t kOp = 4096;

int lay_out(const std::string& path, uint64_t bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  DataBuffer buf(1 << 20);
  int e = 0;
  for (uint64_t off = 0; off < bytes && e == 0; off += buf.size()) {
    uint64_t n = bytes - off < buf.size() ? bytes - off : buf.size();
    e = pwrite_all(fd, buf.data(), n, off);
  }
  if (e == 0 && ::fsync(fd) != 0) e = errno;
  ::close(fd);
  return e;
}

// What one child reports through its result pipe.
struct ChildReport {
  uint64_t ops = 0;
  int error = 0;
};

[[noreturn]] void child(const std::string& path, uint64_t file_bytes, double seconds, int start_fd,
                        int result_fd, unsigned index) {
  ChildReport r;
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) r.error = errno;
  DataBuffer buf(kOp, index + 7);
  Random rnd(index * 2654435761u + 1);
  char c;
  while (::read(start_fd, &c, 1) < 0 && errno == EINTR) {
  }  // EOF: the parent closed the write end, everyone starts
  double end = now_seconds() + seconds;
  uint64_t slots = file_bytes / kOp;
  while (r.error == 0 && now_seconds() < end) {
    uint64_t off = (rnd.next() % slots) * kOp;
    *reinterpret_cast<uint64_t*>(buf.data()) = r.ops;
    r.error = pwrite_all(fd, buf.data(), kOp, off);
    if (r.error == 0 && ::fsync(fd) != 0) r.error = errno;
    if (r.error == 0) r.ops++;
  }
  if (fd >= 0) ::close(fd);
  ssize_t ignored = ::write(result_fd, &r, sizeof r);
  (void)ignored;
  ::_exit(0);
}

}  // namespace

Outcome rewriters(const std::string& dir, unsigned procs, uint64_t file_bytes, double seconds,
                  bool shared) {
  if (procs == 0 || file_bytes < kOp) return failure(EINVAL, "rewriters: bad arguments");
  if (int e = make_dir(dir)) return failure(e, "mkdir " + dir);
  std::vector<std::string> paths;
  for (unsigned i = 0; i < (shared ? 1u : procs); i++) {
    paths.push_back(dir + "/rw" + std::to_string(i));
    if (int e = lay_out(paths.back(), file_bytes)) return failure(e, "lay out " + paths.back());
  }
  int start[2], result[2];
  if (::pipe2(start, O_CLOEXEC) != 0 || ::pipe2(result, O_CLOEXEC) != 0)
    return failure(errno, "pipe");
  std::vector<pid_t> pids;
  for (unsigned i = 0; i < procs; i++) {
    pid_t pid = ::fork();
    if (pid < 0) return failure(errno, "fork");
    if (pid == 0) {
      ::close(start[1]);
      ::close(result[0]);
      child(paths[shared ? 0 : i], file_bytes, seconds, start[0], result[1], i);
    }
    pids.push_back(pid);
  }
  ::close(start[0]);
  ::close(result[1]);
  double t0 = now_seconds();
  ::close(start[1]);  // go
  uint64_t total = 0;
  int error = 0;
  for (unsigned i = 0; i < procs; i++) {
    ChildReport r;
    ssize_t n = ::read(result[0], &r, sizeof r);  // each report is one atomic pipe write
    if (n != ssize_t(sizeof r)) {
      error = error ? error : EPIPE;
      continue;
    }
    total += r.ops;
    if (r.error && !error) error = r.error;
  }
  for (pid_t p : pids) ::waitpid(p, nullptr, 0);
  double secs = now_seconds() - t0;
  ::close(result[0]);
  if (error) return failure(error, "rewriter pwrite+fsync");
  Outcome o;
  o.figure.value = double(total) / secs;
  o.figure.unit = "ops/s";
  char d[160];
  std::snprintf(d, sizeof d, "%llu pwrite+fsync, %u procs, %s files of %llu KiB, %.3f s",
                (unsigned long long)total, procs, shared ? "one shared" : "own",
                (unsigned long long)(file_bytes >> 10), secs);
  o.figure.detail = d;
  return o;
}

}  // namespace stablefs::bench
