// The fuzzers' input reader: little-endian fields that read as 0 past the
// end of the input, so every byte string is a valid program.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace stablefs::fuzz {

class Input {
 public:
  Input(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  bool done() const { return pos_ >= n_; }
  uint8_t u8() { return pos_ < n_ ? p_[pos_++] : 0; }
  uint16_t u16() {
    uint16_t lo = u8();
    return uint16_t(lo | uint16_t(u8()) << 8);
  }
  uint32_t u32() {
    uint32_t lo = u16();
    return lo | uint32_t(u16()) << 16;
  }
  // Copies up to n bytes (fewer at the end of the input); returns how many.
  size_t take(uint8_t* out, size_t n) {
    n = std::min(n, n_ - std::min(n_, pos_));
    if (n) std::memcpy(out, p_ + pos_, n);
    pos_ += n;
    return n;
  }
  std::string bytes(size_t n) {
    std::string s(std::min(n, n_ - std::min(n_, pos_)), '\0');
    take(reinterpret_cast<uint8_t*>(s.data()), s.size());
    return s;
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
};

}  // namespace stablefs::fuzz
