#include "bench/clock.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <ctime>

namespace stablefs::bench {

double now_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

DataBuffer::DataBuffer(size_t bytes, uint64_t seed) : size_(bytes) {
  void* p = nullptr;
  if (::posix_memalign(&p, 4096, bytes ? bytes : 4096) != 0) std::abort();
  data_ = static_cast<char*>(p);
  Random r(seed);
  for (size_t i = 0; i + 8 <= bytes; i += 8) {
    uint64_t v = r.next();
    for (int b = 0; b < 8; b++) data_[i + b] = char(v >> (8 * b));
  }
}

DataBuffer::~DataBuffer() { std::free(data_); }

int pwrite_all(int fd, const char* buf, size_t len, uint64_t offset) {
  while (len > 0) {
    ssize_t n = ::pwrite(fd, buf, len, off_t(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    buf += n;
    len -= size_t(n);
    offset += uint64_t(n);
  }
  return 0;
}

int make_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) == 0 || errno == EEXIST) return 0;
  return errno;
}

}  // namespace stablefs::bench
