// POSIX file data on a real mount: truncate, sparse files and
// SEEK_DATA/SEEK_HOLE, fallocate, shared mmap, O_DIRECT and files past 4 GiB.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "tests/integration/mount_fixture.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {
namespace {

class PosixData : public RealMount {};

constexpr off_t kMiB = 1 << 20;

std::string pattern(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = char(seed + (i * 7 + i / 4096) % 61);
  return s;
}

std::string pread_str(int fd, size_t n, off_t off) {
  std::string s(n, '\x55');
  ssize_t got = pread(fd, s.data(), n, off);
  if (got < 0) return "<errno " + std::to_string(errno) + ">";
  s.resize(size_t(got));
  return s;
}

TEST_F(PosixData, TruncateUpReadsZerosAndTruncateDownDiscards) {
  const std::string data = pattern(10000, 'a');
  ASSERT_EQ(write_file(path("f"), data), 0);
  ASSERT_EQ(truncate(path("f").c_str(), 100), 0);
  EXPECT_EQ(stat_of(path("f")).st_size, 100);
  ASSERT_EQ(truncate(path("f").c_str(), 3 * kMiB + 5), 0);
  auto check = [&] {
    std::string got = slurp(path("f"));
    ASSERT_EQ(got.size(), size_t(3 * kMiB + 5));
    EXPECT_TRUE(same_bytes(got.substr(0, 100), data.substr(0, 100)));
    EXPECT_TRUE(all_zero(got.substr(100))) << "bytes past the old size, including those "
                                              "written before the shrink, read as zero";
  };
  check();
  {
    UniqueFd fd = open_fd(path("f"), O_RDWR);
    ASSERT_EQ(ftruncate(fd.get(), 50), 0);
    ASSERT_EQ(ftruncate(fd.get(), 4096 + 17), 0);
    EXPECT_TRUE(same_bytes(pread_str(fd.get(), 4096 + 17, 0),
                           data.substr(0, 50) + std::string(4096 + 17 - 50, '\0')));
    ASSERT_EQ(ftruncate(fd.get(), 3 * kMiB + 5), 0);
  }
  ASSERT_NO_FATAL_FAILURE(remount());
  {
    std::string got = slurp(path("f"));
    ASSERT_EQ(got.size(), size_t(3 * kMiB + 5));
    EXPECT_TRUE(same_bytes(got.substr(0, 50), data.substr(0, 50)));
    EXPECT_TRUE(all_zero(got.substr(50)));
  }
  ASSERT_EQ(truncate(path("f").c_str(), 0), 0);
  EXPECT_EQ(stat_of(path("f")).st_size, 0);
}

TEST_F(PosixData, OTruncEmptiesTheFile) {
  ASSERT_EQ(write_file(path("f"), pattern(50000, 'q')), 0);
  {
    UniqueFd fd = open_fd(path("f"), O_WRONLY | O_TRUNC);
    ASSERT_TRUE(fd.ok());
  }
  EXPECT_EQ(stat_of(path("f")).st_size, 0);
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(stat_of(path("f")).st_size, 0);
}

TEST_F(PosixData, SparseWritesReportDataAndHolesThroughLseek) {
  const std::string a = pattern(4096, 'a');
  const std::string b = pattern(8192, 'b');
  {
    UniqueFd fd = open_fd(path("f"), O_RDWR | O_CREAT);
    ASSERT_TRUE(fd.ok());
    ASSERT_EQ(pwrite(fd.get(), a.data(), a.size(), 0), ssize_t(a.size()));
    ASSERT_EQ(pwrite(fd.get(), b.data(), b.size(), 4 * kMiB), ssize_t(b.size()));
  }
  auto check = [&] {
    UniqueFd fd = open_fd(path("f"), O_RDONLY);
    ASSERT_TRUE(fd.ok());
    const off_t end = 4 * kMiB + 8192;
    EXPECT_EQ(lseek(fd.get(), 0, SEEK_END), end);
    EXPECT_EQ(lseek(fd.get(), 0, SEEK_DATA), 0);
    EXPECT_EQ(lseek(fd.get(), 0, SEEK_HOLE), 4096);
    EXPECT_EQ(lseek(fd.get(), 4096, SEEK_DATA), 4 * kMiB);
    EXPECT_EQ(lseek(fd.get(), 4 * kMiB, SEEK_HOLE), end) << "EOF is a hole";
    EXPECT_EQ(lseek(fd.get(), kMiB, SEEK_HOLE), kMiB);
    EXPECT_EQ(SFS_ERRNO_OF(lseek(fd.get(), end, SEEK_DATA)), ENXIO);
    EXPECT_EQ(SFS_ERRNO_OF(lseek(fd.get(), end + 1, SEEK_HOLE)), ENXIO);
    EXPECT_TRUE(same_bytes(pread_str(fd.get(), a.size(), 0), a));
    EXPECT_TRUE(all_zero(pread_str(fd.get(), 4 * kMiB - 4096, 4096)));
    EXPECT_TRUE(same_bytes(pread_str(fd.get(), b.size(), 4 * kMiB), b));
    struct stat st;
    ASSERT_EQ(fstat(fd.get(), &st), 0);
    EXPECT_LT(st.st_blocks * 512, 1 * kMiB) << "the hole takes no space";
  };
  check();
  ASSERT_NO_FATAL_FAILURE(remount());
  check();
}

TEST_F(PosixData, FallocateDefaultExtendsSizeAndAllocates) {
  UniqueFd fd = open_fd(path("f"), O_RDWR | O_CREAT);
  ASSERT_TRUE(fd.ok());
  ASSERT_EQ(fallocate(fd.get(), 0, 0, 2 * kMiB), 0);
  struct stat st;
  ASSERT_EQ(fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, 2 * kMiB);
  EXPECT_GE(st.st_blocks * 512, 2 * kMiB);
  EXPECT_TRUE(all_zero(pread_str(fd.get(), 2 * kMiB, 0)));
  fd.reset();
  ASSERT_NO_FATAL_FAILURE(remount());
  struct stat after = stat_of(path("f"));
  EXPECT_EQ(after.st_size, 2 * kMiB);
  EXPECT_GE(after.st_blocks * 512, 2 * kMiB);
  EXPECT_TRUE(all_zero(slurp(path("f"))));
}

TEST_F(PosixData, FallocateKeepSizeAllocatesWithoutGrowing) {
  ASSERT_EQ(write_file(path("f"), "abc"), 0);
  UniqueFd fd = open_fd(path("f"), O_RDWR);
  ASSERT_EQ(fallocate(fd.get(), FALLOC_FL_KEEP_SIZE, 0, 4 * kMiB), 0);
  struct stat st;
  ASSERT_EQ(fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, 3);
  EXPECT_GE(st.st_blocks * 512, 4 * kMiB);
  EXPECT_EQ(pread_str(fd.get(), 10, 0), "abc");
}

TEST_F(PosixData, PunchHoleReadsZerosAndFreesBlocks) {
  const std::string data = pattern(4 * kMiB, 'p');
  ASSERT_EQ(write_file(path("f"), data), 0);
  UniqueFd fd = open_fd(path("f"), O_RDWR);
  ASSERT_EQ(fsync(fd.get()), 0);
  struct stat before;
  ASSERT_EQ(fstat(fd.get(), &before), 0);
  ASSERT_GE(before.st_blocks * 512, 4 * kMiB);
  ASSERT_EQ(fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, kMiB, 2 * kMiB), 0);
  ASSERT_EQ(fsync(fd.get()), 0);
  struct stat after;
  ASSERT_EQ(fstat(fd.get(), &after), 0);
  EXPECT_EQ(after.st_size, 4 * kMiB);
  EXPECT_LE(after.st_blocks * 512, before.st_blocks * 512 - 2 * kMiB);
  auto check = [&](int f) {
    EXPECT_TRUE(same_bytes(pread_str(f, kMiB, 0), data.substr(0, kMiB)));
    EXPECT_TRUE(all_zero(pread_str(f, 2 * kMiB, kMiB)));
    EXPECT_TRUE(same_bytes(pread_str(f, kMiB, 3 * kMiB), data.substr(3 * kMiB)));
    EXPECT_EQ(lseek(f, kMiB, SEEK_HOLE), kMiB);
    EXPECT_EQ(lseek(f, kMiB, SEEK_DATA), 3 * kMiB);
  };
  check(fd.get());
  // Unaligned punch zeroes partial blocks in place.
  ASSERT_EQ(fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, 200), 0);
  EXPECT_TRUE(same_bytes(pread_str(fd.get(), 400, 0),
                         data.substr(0, 100) + std::string(200, '\0') + data.substr(300, 100)));
  fd.reset();
  ASSERT_NO_FATAL_FAILURE(remount());
  fd = open_fd(path("f"), O_RDONLY);
  EXPECT_TRUE(same_bytes(pread_str(fd.get(), 400, 0),
                         data.substr(0, 100) + std::string(200, '\0') + data.substr(300, 100)));
  EXPECT_TRUE(all_zero(pread_str(fd.get(), 2 * kMiB, kMiB)));
  EXPECT_TRUE(same_bytes(pread_str(fd.get(), kMiB, 3 * kMiB), data.substr(3 * kMiB)));
}

TEST_F(PosixData, SharedMmapWriteMsyncIsVisibleToReadAndSurvivesRemount) {
  const size_t len = 64 * 1024 + 123;
  ASSERT_EQ(write_file(path("f"), std::string(len, '\0')), 0);
  const std::string want = pattern(len, 'm');
  {
    UniqueFd fd = open_fd(path("f"), O_RDWR);
    ASSERT_TRUE(fd.ok());
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    ASSERT_NE(p, MAP_FAILED) << strerror(errno);
    std::memcpy(p, want.data(), len);
    EXPECT_EQ(msync(p, len, MS_SYNC), 0);
    UniqueFd other = open_fd(path("f"), O_RDONLY);
    EXPECT_TRUE(same_bytes(pread_str(other.get(), len, 0), want));
    ASSERT_EQ(munmap(p, len), 0);
  }
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_TRUE(same_bytes(slurp(path("f")), want));
}

TEST_F(PosixData, ODirectAlignedWriteAndReadRoundTrip) {
  const size_t len = 256 * 1024;
  const std::string want = pattern(len, 'd');
  auto free_fn = [](void* p) { std::free(p); };
  std::unique_ptr<void, decltype(free_fn)> buf(std::aligned_alloc(4096, len), free_fn);
  std::memcpy(buf.get(), want.data(), len);
  {
    UniqueFd fd = open_fd(path("f"), O_RDWR | O_CREAT | O_DIRECT);
    ASSERT_TRUE(fd.ok()) << strerror(errno);
    ASSERT_EQ(pwrite(fd.get(), buf.get(), len, 8192), ssize_t(len)) << strerror(errno);
    std::memset(buf.get(), 0, len);
    ASSERT_EQ(pread(fd.get(), buf.get(), len, 8192), ssize_t(len)) << strerror(errno);
    EXPECT_EQ(std::memcmp(buf.get(), want.data(), len), 0);
  }
  UniqueFd buffered = open_fd(path("f"), O_RDONLY);
  EXPECT_TRUE(same_bytes(pread_str(buffered.get(), len, 8192), want))
      << "buffered readers see direct writes";
  EXPECT_TRUE(all_zero(pread_str(buffered.get(), 8192, 0)));
  buffered.reset();
  ASSERT_NO_FATAL_FAILURE(remount());
  UniqueFd fd = open_fd(path("f"), O_RDONLY | O_DIRECT);
  ASSERT_TRUE(fd.ok());
  std::memset(buf.get(), 0, len);
  ASSERT_EQ(pread(fd.get(), buf.get(), len, 8192), ssize_t(len));
  EXPECT_EQ(std::memcmp(buf.get(), want.data(), len), 0);
}

TEST_F(PosixData, SparseFileBeyondFourGiBReadsBackAndHoleIsZero) {
  const off_t far = 5ll << 30;
  const std::string tail = pattern(10000, 't');
  {
    UniqueFd fd = open_fd(path("big"), O_RDWR | O_CREAT);
    ASSERT_TRUE(fd.ok());
    ASSERT_EQ(pwrite(fd.get(), "head", 4, 0), 4);
    ASSERT_EQ(pwrite(fd.get(), tail.data(), tail.size(), far), ssize_t(tail.size()));
  }
  auto check = [&] {
    struct stat st = stat_of(path("big"));
    EXPECT_EQ(st.st_size, far + off_t(tail.size()));
    EXPECT_LT(st.st_blocks * 512, 1 * kMiB);
    UniqueFd fd = open_fd(path("big"), O_RDONLY);
    EXPECT_TRUE(same_bytes(pread_str(fd.get(), tail.size(), far), tail));
    EXPECT_EQ(pread_str(fd.get(), 4, 0), "head");
    EXPECT_TRUE(all_zero(pread_str(fd.get(), kMiB, (4ll << 30) - 4096)))
        << "the hole across the 4 GiB boundary reads zero";
    EXPECT_TRUE(all_zero(pread_str(fd.get(), 4096, far - 4096)));
    EXPECT_EQ(lseek(fd.get(), 4096, SEEK_DATA), far & ~off_t(4095));
  };
  check();
  ASSERT_NO_FATAL_FAILURE(remount());
  check();
}

TEST_F(PosixData, OverwriteInTheMiddleKeepsSurroundingBytes) {
  const std::string data = pattern(3 * kMiB, 'o');
  ASSERT_EQ(write_file(path("f"), data), 0);
  {
    UniqueFd fd = open_fd(path("f"), O_WRONLY);
    ASSERT_EQ(pwrite(fd.get(), "XYZ", 3, kMiB + 4094), 3);
  }
  std::string want = data;
  want.replace(kMiB + 4094, 3, "XYZ");
  EXPECT_TRUE(same_bytes(slurp(path("f")), want));
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_TRUE(same_bytes(slurp(path("f")), want));
}

}  // namespace
}  // namespace stablefs::integ
