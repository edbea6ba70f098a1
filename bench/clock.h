// Monotonic time and the small helpers every workload shares.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace stablefs::bench {

double now_seconds();  // CLOCK_MONOTONIC

// A page-aligned buffer of `bytes` filled with non-repeating bytes (so no
// layer can shortcut zero pages), freed on destruction.
class DataBuffer {
 public:
  explicit DataBuffer(size_t bytes, uint64_t seed = 1);
  ~DataBuffer();
  DataBuffer(const DataBuffer&) = delete;
  DataBuffer& operator=(const DataBuffer&) = delete;
  char* data() { return data_; }
  size_t size() const { return size_; }

 private:
  char* data_ = nullptr;
  size_t size_ = 0;
};

// Writes all of buf at offset (retrying short writes). Returns 0 or errno.
int pwrite_all(int fd, const char* buf, size_t len, uint64_t offset);

// mkdir that accepts an existing directory. Returns 0 or errno.
int make_dir(const std::string& path);

// xorshift64*: cheap, deterministic per seed, good enough for offsets.
class Random {
 public:
  explicit Random(uint64_t seed) : s_(seed ? seed : 0x9E3779B97F4A7C15ull) {}
  uint64_t next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545F4914F6CDD1Dull;
  }

 private:
  uint64_t s_;
};

}  // namespace stablefs::bench
