#include "tests/integration/image_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstring>
#include <memory>
#include <random>

namespace stablefs::integ {
namespace {

// Owns one fd.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

constexpr size_t kScanChunk = 256 * kBlockSize;

// Calls fn(blocknr, block) for every block from `from` on; stops early when
// fn returns false. Holes read as zeros, like any other block.
template <class Fn>
void scan_blocks(const std::string& path, uint64_t from, Fn fn) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return;
  std::vector<uint8_t> buf(kScanChunk);
  uint64_t block = from;
  for (;;) {
    ssize_t got = pread(fd.get(), buf.data(), buf.size(), off_t(block * kBlockSize));
    if (got <= 0) return;
    size_t n = size_t(got) / kBlockSize;
    for (size_t i = 0; i < n; ++i) {
      if (!fn(block + i, buf.data() + i * kBlockSize)) return;
    }
    if (n == 0) return;
    block += n;
  }
}

}  // namespace

uint64_t hash_file(const std::string& path) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return 0;
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> st(XXH3_createState(), &XXH3_freeState);
  XXH3_64bits_reset(st.get());
  std::vector<uint8_t> buf(1 << 20);
  uint64_t total = 0;
  for (;;) {
    ssize_t got = read(fd.get(), buf.data(), buf.size());
    if (got < 0) return 0;
    if (got == 0) break;
    XXH3_64bits_update(st.get(), buf.data(), size_t(got));
    total += uint64_t(got);
  }
  XXH3_64bits_update(st.get(), &total, sizeof(total));
  return XXH3_64bits_digest(st.get());
}

std::vector<uint8_t> read_block(const std::string& path, uint64_t blocknr) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  std::vector<uint8_t> out(kBlockSize);
  if (fd.get() < 0 ||
      pread(fd.get(), out.data(), out.size(), off_t(blocknr * kBlockSize)) != ssize_t(kBlockSize)) {
    return {};
  }
  return out;
}

bool write_block(const std::string& path, uint64_t blocknr, const std::vector<uint8_t>& block) {
  Fd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  return fd.get() >= 0 && block.size() == kBlockSize &&
         pwrite(fd.get(), block.data(), block.size(), off_t(blocknr * kBlockSize)) ==
             ssize_t(kBlockSize) &&
         fsync(fd.get()) == 0;
}

bool flip_byte(const std::string& path, uint64_t offset) {
  Fd fd(open(path.c_str(), O_RDWR | O_CLOEXEC));
  uint8_t b = 0;
  if (fd.get() < 0 || pread(fd.get(), &b, 1, off_t(offset)) != 1) return false;
  b = uint8_t(~b);
  return pwrite(fd.get(), &b, 1, off_t(offset)) == 1 && fsync(fd.get()) == 0;
}

std::optional<Superblock> load_superblock(const std::string& path, std::string* why) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    *why = "stat failed";
    return std::nullopt;
  }
  auto block = read_block(path, kSuperblockA);
  if (block.empty()) {
    *why = "short read";
    return std::nullopt;
  }
  auto sb = decode_superblock(block.data(), kSuperblockA, uint64_t(st.st_size) / kBlockSize, why);
  if (!sb.ok()) return std::nullopt;
  return *sb;
}

std::vector<uint64_t> find_blocks_equal(const std::string& path, uint64_t from,
                                        const std::vector<uint8_t>& pattern) {
  std::vector<uint64_t> out;
  scan_blocks(path, from, [&](uint64_t nr, const uint8_t* b) {
    if (std::memcmp(b, pattern.data(), kBlockSize) == 0) out.push_back(nr);
    return true;
  });
  return out;
}

std::vector<uint64_t> find_meta_blocks(const std::string& path, uint64_t from, uint32_t magic,
                                       uint64_t owner) {
  std::vector<uint64_t> out;
  scan_blocks(path, from, [&](uint64_t nr, const uint8_t* b) {
    MetaHeader h = decode_meta_header(b);
    if (h.magic == magic && h.blocknr == nr && (owner == 0 || h.owner == owner)) {
      out.push_back(nr);
    }
    return true;
  });
  return out;
}

std::vector<uint8_t> unique_block_pattern(uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x5eedf00dcafe1234ull);
  std::vector<uint8_t> out(kBlockSize);
  for (size_t i = 0; i < out.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(out.data() + i, &v, 8);
  }
  return out;
}

}  // namespace stablefs::integ
