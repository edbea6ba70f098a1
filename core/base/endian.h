// Explicit little-endian, fixed-width encoding. Every on-disk field goes
// through these helpers; no struct is ever memcpy'd onto disk.
#pragma once

#include <cstdint>
#include <cstring>

namespace stablefs {

inline void put_le16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v);
  p[1] = uint8_t(v >> 8);
}
inline void put_le32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = uint8_t(v >> (8 * i));
}
inline void put_le64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = uint8_t(v >> (8 * i));
}
inline uint16_t get_le16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
inline uint32_t get_le32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
inline uint64_t get_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

// Sequential writer/reader over a fixed buffer. Reads past the end return
// zero and set overflow(), so a corrupt length can never read out of bounds.
class Encoder {
 public:
  Encoder(uint8_t* p, size_t len) : p_(p), len_(len) {}
  void u8(uint8_t v) { if (room(1)) p_[pos_++] = v; }
  void u16(uint16_t v) { if (room(2)) { put_le16(p_ + pos_, v); pos_ += 2; } }
  void u32(uint32_t v) { if (room(4)) { put_le32(p_ + pos_, v); pos_ += 4; } }
  void u64(uint64_t v) { if (room(8)) { put_le64(p_ + pos_, v); pos_ += 8; } }
  void bytes(const void* src, size_t n) {
    if (room(n)) { std::memcpy(p_ + pos_, src, n); pos_ += n; }
  }
  void skip(size_t n) { if (room(n)) { std::memset(p_ + pos_, 0, n); pos_ += n; } }
  size_t pos() const { return pos_; }
  bool overflow() const { return overflow_; }

 private:
  // n > len_ - pos_, not pos_ + n > len_: a huge n from a corrupt length
  // field must not wrap around. Invariant: pos_ <= len_.
  bool room(size_t n) {
    if (n > len_ - pos_) { overflow_ = true; return false; }
    return true;
  }
  uint8_t* p_;
  size_t len_;
  size_t pos_ = 0;
  bool overflow_ = false;
};

class Decoder {
 public:
  Decoder(const uint8_t* p, size_t len) : p_(p), len_(len) {}
  uint8_t u8() { return room(1) ? p_[pos_++] : 0; }
  uint16_t u16() { if (!room(2)) return 0; auto v = get_le16(p_ + pos_); pos_ += 2; return v; }
  uint32_t u32() { if (!room(4)) return 0; auto v = get_le32(p_ + pos_); pos_ += 4; return v; }
  uint64_t u64() { if (!room(8)) return 0; auto v = get_le64(p_ + pos_); pos_ += 8; return v; }
  bool bytes(void* dst, size_t n) {
    if (!room(n)) return false;
    std::memcpy(dst, p_ + pos_, n);
    pos_ += n;
    return true;
  }
  void skip(size_t n) { if (room(n)) pos_ += n; }
  size_t pos() const { return pos_; }
  size_t remaining() const { return pos_ <= len_ ? len_ - pos_ : 0; }
  bool overflow() const { return overflow_; }

 private:
  // See Encoder::room: written so that a huge n cannot wrap around.
  bool room(size_t n) {
    if (overflow_ || n > len_ - pos_) { overflow_ = true; return false; }
    return true;
  }
  const uint8_t* p_;
  size_t len_;
  size_t pos_ = 0;
  bool overflow_ = false;
};

}  // namespace stablefs
