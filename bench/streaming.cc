// Sequential write and cold sequential read.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "bench/clock.h"
#include "bench/workloads.h"

namespace stablefs::bench {

Outcome failure(int error, std::string what) {
  Outcome o;
  o.error = error;
  o.what = std::move(what);
  return o;
}

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

// Closes on every return path, so a failed workload leaves no fd behind.
struct Fd {
  int fd;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

Outcome seq_write(const std::string& path, uint64_t bytes, uint64_t block) {
  DataBuffer buf(block);
  double start = now_seconds();
  Fd f(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (f.fd < 0) return failure(errno, "open " + path);
  for (uint64_t off = 0; off < bytes; off += block) {
    // Vary the first word so no two blocks are identical.
    *reinterpret_cast<uint64_t*>(buf.data()) = off;
    if (int e = pwrite_all(f.fd, buf.data(), block, off)) return failure(e, "pwrite " + path);
  }
  if (::fsync(f.fd) != 0) return failure(errno, "fsync " + path);
  double secs = now_seconds() - start;
  Outcome o;
  o.figure.value = double(bytes) / kMiB / secs;
  o.figure.unit = "MiB/s";
  char d[128];
  std::snprintf(d, sizeof d, "%.0f MiB in %.3f s incl. fsync", double(bytes) / kMiB, secs);
  o.figure.detail = d;
  return o;
}

Outcome seq_read(const std::string& path, uint64_t block) {
  DataBuffer buf(block);
  double start = now_seconds();
  Fd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (f.fd < 0) return failure(errno, "open " + path);
  uint64_t total = 0;
  for (;;) {
    ssize_t n = ::read(f.fd, buf.data(), block);
    if (n < 0) {
      if (errno == EINTR) continue;
      return failure(errno, "read " + path);
    }
    if (n == 0) break;
    total += uint64_t(n);
  }
  double secs = now_seconds() - start;
  if (total == 0) return failure(ENODATA, "empty file " + path);
  Outcome o;
  o.figure.value = double(total) / kMiB / secs;
  o.figure.unit = "MiB/s";
  char d[128];
  std::snprintf(d, sizeof d, "%.0f MiB in %.3f s", double(total) / kMiB, secs);
  o.figure.detail = d;
  return o;
}

}  // namespace stablefs::bench
