// Specification of the block device layer: UringDevice over a real image
// file, open_device, the FaultDevice test double and MemDevice crashes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/base/format.h"
#include "core/io/counting_device.h"
#include "core/io/fault_device.h"
#include "core/io/mem_device.h"
#include "core/io/open_device.h"
#include "core/io/overlay_device.h"
#include "core/io/uring_device.h"

namespace stablefs {
namespace {

namespace fs = std::filesystem;

// Block-aligned memory, as O_DIRECT requires.
class AlignedBuf {
 public:
  explicit AlignedBuf(size_t blocks)
      : size_(blocks * kBlockSize),
        p_(static_cast<uint8_t*>(std::aligned_alloc(kBlockSize, size_)), &std::free) {
    std::memset(p_.get(), 0, size_);
  }
  uint8_t* data() const { return p_.get(); }
  uint8_t* block(size_t i) const { return p_.get() + i * kBlockSize; }
  size_t size() const { return size_; }
  // Every byte depends on (block on disk, tag), so misplaced or stale
  // blocks are told apart from correct ones.
  void fill(uint64_t first_blocknr, uint32_t tag) {
    for (size_t i = 0; i < size_; i++)
      p_.get()[i] = uint8_t((first_blocknr + i / kBlockSize) * 131 + tag * 17 + i % kBlockSize % 251);
  }
  bool operator==(const AlignedBuf& o) const {
    return size_ == o.size_ && std::memcmp(data(), o.data(), size_) == 0;
  }

 private:
  size_t size_;
  std::unique_ptr<uint8_t, decltype(&std::free)> p_;
};

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "sfs-device-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

// Reads the image behind the device's back, to check what really landed.
std::vector<uint8_t> read_file_block(const std::string& path, uint64_t blocknr) {
  std::vector<uint8_t> out(kBlockSize);
  int fd = ::open(path.c_str(), O_RDONLY);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::pread(fd, out.data(), kBlockSize, off_t(blocknr * kBlockSize)),
            ssize_t(kBlockSize));
  ::close(fd);
  return out;
}

std::vector<uint8_t> bytes_of(const uint8_t* p) { return {p, p + kBlockSize}; }

class UringDeviceTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kBlocks = 4096;  // 16 MiB image

  void SetUp() override {
    path_ = dir_.file("image");
    OpenOptions o;
    o.create = true;
    o.create_size = kBlocks * kBlockSize;
    auto d = open_device(path_, o);
    ASSERT_TRUE(d.ok()) << strerror(d.error());
    dev_ = std::move(*d);
    uring_ = dynamic_cast<UringDevice*>(dev_.get());
    ASSERT_NE(uring_, nullptr);
  }

  TempDir dir_;
  std::string path_;
  std::unique_ptr<BlockDevice> dev_;
  UringDevice* uring_ = nullptr;
};

TEST_F(UringDeviceTest, MultiSegmentWriteReadsBackWithOtherSegmentation) {
  AlignedBuf out(4);
  out.fill(10, 1);
  IoRequest w;
  w.op = IoOp::kWrite;
  w.blocknr = 10;
  w.add(out.block(0), kBlockSize);
  w.add(out.block(1), 2 * kBlockSize);
  w.add(out.block(3), kBlockSize);
  IoRequest* ws[] = {&w};
  ASSERT_TRUE(dev_->submit_and_wait(ws).ok());
  EXPECT_EQ(w.result, 0);

  AlignedBuf in(4);
  IoRequest r;
  r.op = IoOp::kRead;
  r.blocknr = 10;
  r.add(in.block(0), 3 * kBlockSize);
  r.add(in.block(3), kBlockSize);
  IoRequest* rs[] = {&r};
  ASSERT_TRUE(dev_->submit_and_wait(rs).ok());
  EXPECT_TRUE(in == out);
  // And it is really on disk, at blocknr * 4096.
  EXPECT_EQ(read_file_block(path_, 12), bytes_of(out.block(2)));
  EXPECT_EQ(dev_->block_count(), kBlocks);
}

TEST_F(UringDeviceTest, FlushInABatchOrdersTheWritesAroundIt) {
  AlignedBuf a(1), b(1), in(1);
  a.fill(7, 1);
  b.fill(7, 2);
  for (int round = 0; round < 10; round++) {
    IoRequest w1, fl, w2;
    w1.op = IoOp::kWrite;
    w1.blocknr = 7;
    w1.add(a.data(), kBlockSize);
    fl.op = IoOp::kFlush;
    w2.op = IoOp::kWrite;
    w2.blocknr = 7;
    w2.add(b.data(), kBlockSize);
    // The first write needs a retry. Were the flush not a barrier, the
    // flush and second write would be in flight meanwhile, and the retried
    // first write would land last.
    std::vector<const IoRequest*> order;
    uring_->set_completion_hook([&](const IoRequest& r, int res) {
      order.push_back(&r);
      return order.size() == 1 ? -EAGAIN : res;
    });
    IoRequest* batch[] = {&w1, &fl, &w2};
    ASSERT_TRUE(dev_->submit_and_wait(batch).ok());
    uring_->set_completion_hook(nullptr);
    EXPECT_EQ(order, (std::vector<const IoRequest*>{&w1, &w1, &fl, &w2}));
    ASSERT_TRUE(dev_->read(7, in.data(), kBlockSize).ok());
    ASSERT_TRUE(in == b) << "round " << round;
    std::swap(a, b);
  }
}

TEST_F(UringDeviceTest, UnalignedOrPartialBlockRequestIsEinvalAndOthersStillRun) {
  AlignedBuf buf(3);
  buf.fill(0, 3);
  IoRequest unaligned, partial, good;
  unaligned.op = IoOp::kWrite;
  unaligned.add(buf.data() + 512, kBlockSize);
  partial.op = IoOp::kWrite;
  partial.blocknr = 1;
  partial.add(buf.data(), kBlockSize + 512);
  good.op = IoOp::kWrite;
  good.blocknr = 5;
  good.add(buf.block(2), kBlockSize);
  IoRequest* batch[] = {&unaligned, &partial, &good};
  Status s = dev_->submit_and_wait(batch);
  EXPECT_EQ(s.error(), EINVAL);
  EXPECT_EQ(unaligned.result, EINVAL);
  EXPECT_EQ(partial.result, EINVAL);
  EXPECT_EQ(good.result, 0);
  EXPECT_EQ(read_file_block(path_, 5), bytes_of(buf.block(2)));
  EXPECT_EQ(read_file_block(path_, 0), std::vector<uint8_t>(kBlockSize, 0));

  IoRequest empty;
  empty.op = IoOp::kRead;
  IoRequest* one[] = {&empty};
  EXPECT_EQ(dev_->submit_and_wait(one).error(), EINVAL);
}

TEST_F(UringDeviceTest, OutOfRangeRequestIsEinval) {
  AlignedBuf buf(2);
  EXPECT_EQ(dev_->read(kBlocks, buf.data(), kBlockSize).error(), EINVAL);
  EXPECT_EQ(dev_->write(kBlocks - 1, buf.data(), 2 * kBlockSize).error(), EINVAL);
  // blocknr * 4096 would wrap around 2^64.
  EXPECT_EQ(dev_->read(~0ull - 1, buf.data(), kBlockSize).error(), EINVAL);
  EXPECT_TRUE(dev_->write(kBlocks - 1, buf.data(), kBlockSize).ok());
}

TEST_F(UringDeviceTest, BatchMuchLargerThanTheRingCompletes) {
  constexpr size_t kCount = 5 * UringDevice::kRingDepth + 17;
  AlignedBuf out(kCount), in(kCount);
  out.fill(100, 4);
  std::vector<IoRequest> reqs(kCount);
  std::vector<IoRequest*> ptrs;
  for (size_t i = 0; i < kCount; i++) {
    reqs[i].op = IoOp::kWrite;
    reqs[i].blocknr = 100 + i;
    reqs[i].add(out.block(i), kBlockSize);
    ptrs.push_back(&reqs[i]);
  }
  ASSERT_TRUE(dev_->submit_and_wait(ptrs).ok());
  for (size_t i = 0; i < kCount; i++) {
    reqs[i] = IoRequest{};
    reqs[i].op = IoOp::kRead;
    reqs[i].blocknr = 100 + i;
    reqs[i].add(in.block(i), kBlockSize);
  }
  ASSERT_TRUE(dev_->submit_and_wait(ptrs).ok());
  EXPECT_TRUE(in == out);
}

TEST_F(UringDeviceTest, ManyThreadsSubmittingAtOnceAllGetTheirOwnData) {
  // More threads than rings, so callers also wait for a free ring.
  constexpr int kThreads = 8, kPerThread = 500, kBatch = 25;
  static_assert(kThreads * kPerThread <= int(kBlocks));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      uint64_t base = uint64_t(t) * kPerThread;
      AlignedBuf out(kBatch), in(kBatch);
      std::vector<IoRequest> reqs(kBatch);
      std::vector<IoRequest*> ptrs;
      for (auto& r : reqs) ptrs.push_back(&r);
      for (int done = 0; done < kPerThread; done += kBatch) {
        out.fill(base + done, uint32_t(t));
        for (int op = 0; op < 2; op++) {
          for (int i = 0; i < kBatch; i++) {
            reqs[i] = IoRequest{};
            reqs[i].op = op == 0 ? IoOp::kWrite : IoOp::kRead;
            reqs[i].blocknr = base + done + i;
            reqs[i].add((op == 0 ? out : in).block(i), kBlockSize);
          }
          if (!dev_->submit_and_wait(ptrs).ok()) failures++;
        }
        if (!(in == out)) failures++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  // Spot-check what reached the file.
  AlignedBuf expect(1);
  expect.fill(3 * kPerThread + 123, 3);
  EXPECT_EQ(read_file_block(path_, 3 * kPerThread + 123), bytes_of(expect.data()));
}

TEST_F(UringDeviceTest, TransientErrorAndShortWriteResubmitTheWholeRequestInPlace) {
  // Sentinels around the target range catch a segment written elsewhere.
  AlignedBuf sentinel(6);
  sentinel.fill(19, 9);
  ASSERT_TRUE(dev_->write(19, sentinel.data(), sentinel.size()).ok());

  AlignedBuf out(4);
  out.fill(20, 5);
  std::vector<int> seen;  // raw results the hook saw
  uring_->set_completion_hook([&](const IoRequest& r, int res) {
    seen.push_back(res);
    if (seen.size() == 1) return -EAGAIN;
    if (seen.size() == 2) return res - int(kBlockSize) - 100;  // short write
    return res;
  });
  uint64_t retries_before = uring_->retry_count();
  IoRequest w;
  w.op = IoOp::kWrite;
  w.blocknr = 20;
  w.add(out.block(0), kBlockSize);
  w.add(out.block(1), 2 * kBlockSize);
  w.add(out.block(3), kBlockSize);
  IoRequest* ws[] = {&w};
  ASSERT_TRUE(dev_->submit_and_wait(ws).ok());
  uring_->set_completion_hook(nullptr);

  // Three submissions of the same 4-block request, each transferring it all.
  EXPECT_EQ(seen, (std::vector<int>{4 * int(kBlockSize), 4 * int(kBlockSize),
                                    4 * int(kBlockSize)}));
  EXPECT_EQ(uring_->retry_count() - retries_before, 2u);
  EXPECT_EQ(w.result, 0);
  ASSERT_TRUE(dev_->flush().ok());
  EXPECT_EQ(read_file_block(path_, 19), bytes_of(sentinel.block(0)));
  for (int i = 0; i < 4; i++)
    EXPECT_EQ(read_file_block(path_, 20 + i), bytes_of(out.block(i))) << "block " << 20 + i;
  EXPECT_EQ(read_file_block(path_, 24), bytes_of(sentinel.block(5)));
}

TEST_F(UringDeviceTest, InterruptedReadIsRetriedAndReturnsTheData) {
  AlignedBuf out(2), in(2);
  out.fill(40, 6);
  ASSERT_TRUE(dev_->write(40, out.data(), out.size()).ok());
  int calls = 0;
  uring_->set_completion_hook([&](const IoRequest&, int res) {
    return ++calls == 1 ? -EINTR : res;
  });
  ASSERT_TRUE(dev_->read(40, in.data(), in.size()).ok());
  EXPECT_EQ(calls, 2);
  EXPECT_TRUE(in == out);
}

TEST_F(UringDeviceTest, PersistentTransientErrorIsEioAfterBoundedRetries) {
  int calls = 0;
  uring_->set_completion_hook([&](const IoRequest&, int) {
    calls++;
    return -EAGAIN;
  });
  AlignedBuf buf(1);
  EXPECT_EQ(dev_->write(3, buf.data(), kBlockSize).error(), EIO);
  EXPECT_EQ(calls, 1 + UringDevice::kMaxRetries);
}

TEST_F(UringDeviceTest, HardErrorIsReturnedAtOnceWithoutRetry) {
  int calls = 0;
  uring_->set_completion_hook([&](const IoRequest&, int) {
    calls++;
    return -ENOSPC;
  });
  AlignedBuf buf(1);
  EXPECT_EQ(dev_->write(3, buf.data(), kBlockSize).error(), ENOSPC);
  EXPECT_EQ(calls, 1);
  // The hook sees flushes too, and a failed flush is reported.
  EXPECT_EQ(dev_->flush().error(), ENOSPC);
}

// ---- open_device ----

TEST(OpenDevice, MissingPathIsEnoent) {
  TempDir dir;
  EXPECT_EQ(open_device(dir.file("nope"), {}).error(), ENOENT);
  OpenOptions ro;
  ro.read_only = true;
  ro.create = true;  // read-only never creates
  ro.create_size = 1 << 20;
  EXPECT_EQ(open_device(dir.file("nope"), ro).error(), ENOENT);
}

TEST(OpenDevice, DirectoryAndCharDeviceAreNotBlockDevices) {
  TempDir dir;
  fs::create_directory(dir.file("d"));
  EXPECT_EQ(open_device(dir.file("d"), {}).error(), ENOTBLK);
  EXPECT_EQ(open_device("/dev/null", {}).error(), ENOTBLK);
}

TEST(OpenDevice, CreateMakesAnImageOfTheRequestedSize) {
  TempDir dir;
  OpenOptions o;
  o.create = true;
  o.create_size = 300 * kBlockSize + 100;  // a partial trailing block is dropped
  auto d = open_device(dir.file("img"), o);
  ASSERT_TRUE(d.ok()) << strerror(d.error());
  EXPECT_EQ((*d)->block_count(), 300u);
  EXPECT_EQ(fs::file_size(dir.file("img")), 300u * kBlockSize);

  o.create = false;
  EXPECT_EQ(open_device(dir.file("tiny"), o).error(), ENOENT);
  o.create = true;
  o.create_size = 100;  // not even one block
  EXPECT_EQ(open_device(dir.file("tiny"), o).error(), EINVAL);
  EXPECT_FALSE(fs::exists(dir.file("tiny")));
}

TEST(OpenDevice, CreateKeepsAnExistingImage) {
  TempDir dir;
  OpenOptions o;
  o.create = true;
  o.create_size = 16 * kBlockSize;
  AlignedBuf data(1);
  data.fill(5, 1);
  {
    auto d = open_device(dir.file("img"), o);
    ASSERT_TRUE(d.ok());
    ASSERT_TRUE((*d)->write(5, data.data(), kBlockSize).ok());
    ASSERT_TRUE((*d)->flush().ok());
  }
  o.create_size = 64 * kBlockSize;
  auto d = open_device(dir.file("img"), o);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ((*d)->block_count(), 16u);
  AlignedBuf in(1);
  ASSERT_TRUE((*d)->read(5, in.data(), kBlockSize).ok());
  EXPECT_TRUE(in == data);
}

TEST(OpenDevice, SecondExclusiveOpenIsEbusyUntilTheFirstCloses) {
  TempDir dir;
  OpenOptions o;
  o.create = true;
  o.create_size = 16 * kBlockSize;
  auto first = open_device(dir.file("img"), o);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(open_device(dir.file("img"), o).error(), EBUSY);
  OpenOptions ro;
  ro.read_only = true;
  EXPECT_EQ(open_device(dir.file("img"), ro).error(), EBUSY);
  OpenOptions shared;
  shared.exclusive = false;
  EXPECT_TRUE(open_device(dir.file("img"), shared).ok());
  first = err(ENOENT);  // closes the device
  EXPECT_TRUE(open_device(dir.file("img"), o).ok());
}

TEST(OpenDevice, ReadOnlyOpensShareAndRefuseWrites) {
  TempDir dir;
  OpenOptions o;
  o.create = true;
  o.create_size = 16 * kBlockSize;
  ASSERT_TRUE(open_device(dir.file("img"), o).ok());
  OpenOptions ro;
  ro.read_only = true;
  auto a = open_device(dir.file("img"), ro);
  auto b = open_device(dir.file("img"), ro);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  AlignedBuf buf(1);
  EXPECT_TRUE((*a)->read(0, buf.data(), kBlockSize).ok());
  EXPECT_EQ((*a)->write(0, buf.data(), kBlockSize).error(), EROFS);
  EXPECT_EQ(open_device(dir.file("img"), OpenOptions{}).error(), EBUSY);
}

TEST(OpenDevice, ImageOnTmpfsWorksWithOrWithoutODirect) {
  // tmpfs refuses O_DIRECT on older kernels; either way I/O must work.
  ASSERT_TRUE(fs::is_directory("/dev/shm"))
      << "/dev/shm is missing: this test needs the tmpfs every Linux system mounts there";
  std::string path = "/dev/shm/sfs-device-test-" + std::to_string(::getpid());
  OpenOptions o;
  o.create = true;
  o.create_size = 64 * kBlockSize;
  {
    auto d = open_device(path, o);
    ASSERT_TRUE(d.ok()) << strerror(d.error());
    AlignedBuf out(3), in(3);
    out.fill(30, 2);
    ASSERT_TRUE((*d)->write(30, out.data(), out.size()).ok());
    ASSERT_TRUE((*d)->flush().ok());
    ASSERT_TRUE((*d)->read(30, in.data(), in.size()).ok());
    EXPECT_TRUE(in == out);
    EXPECT_EQ(read_file_block(path, 31), bytes_of(out.block(1)));
  }
  fs::remove(path);
}

// ---- FaultDevice over MemDevice ----

class FaultDeviceTest : public ::testing::Test {
 protected:
  MemDevice mem_{64};
  FaultDevice dev_{mem_};
  AlignedBuf a_{4}, b_{4};
  void SetUp() override {
    a_.fill(0, 1);
    b_.fill(0, 2);
  }
};

TEST_F(FaultDeviceTest, BadBlockFailsOnlyTheChosenKindOfRequest) {
  ASSERT_TRUE(dev_.write(5, a_.data(), kBlockSize).ok());
  dev_.fail_block(5, FaultOn::kWrite);
  EXPECT_EQ(dev_.write(5, b_.data(), kBlockSize).error(), EIO);
  EXPECT_EQ(dev_.write(4, b_.data(), 3 * kBlockSize).error(), EIO);  // covers 5
  EXPECT_TRUE(dev_.write(6, b_.data(), kBlockSize).ok());
  AlignedBuf in(1);
  ASSERT_TRUE(dev_.read(5, in.data(), kBlockSize).ok());
  EXPECT_EQ(bytes_of(in.data()), bytes_of(a_.data())) << "failed write must not land";

  dev_.fail_block(5, FaultOn::kRead);
  EXPECT_EQ(dev_.read(5, in.data(), kBlockSize).error(), EIO);
  EXPECT_TRUE(dev_.write(5, b_.data(), kBlockSize).ok());
  dev_.heal_block(5);
  ASSERT_TRUE(dev_.read(5, in.data(), kBlockSize).ok());
  EXPECT_EQ(bytes_of(in.data()), bytes_of(b_.data()));
  EXPECT_EQ(dev_.injected_faults(), 3u);
}

TEST_F(FaultDeviceTest, TransientFailuresReturnEagainThenSucceed) {
  dev_.fail_transiently(3, FaultOn::kWrite, 2);
  uint64_t writes_before = mem_.write_count();
  EXPECT_EQ(dev_.write(3, a_.data(), kBlockSize).error(), EAGAIN);
  EXPECT_EQ(dev_.write(2, a_.data(), 2 * kBlockSize).error(), EAGAIN);
  EXPECT_EQ(mem_.write_count(), writes_before) << "a transient failure must not touch the device";
  // Resubmitting the same request is safe and now succeeds.
  EXPECT_TRUE(dev_.write(3, a_.data(), kBlockSize).ok());
  EXPECT_TRUE(dev_.write(3, a_.data(), kBlockSize).ok());
  AlignedBuf in(1);
  ASSERT_TRUE(dev_.read(3, in.data(), kBlockSize).ok());
  EXPECT_EQ(bytes_of(in.data()), bytes_of(a_.data()));
}

TEST_F(FaultDeviceTest, TornWriteKeepsOnlyTheFirstBytes) {
  ASSERT_TRUE(dev_.write(10, a_.data(), 3 * kBlockSize).ok());
  dev_.tear_next_write(10, kBlockSize + 100);
  IoRequest w;
  w.op = IoOp::kWrite;
  w.blocknr = 10;
  w.add(b_.block(0), 2 * kBlockSize);  // the tear falls inside a segment
  w.add(b_.block(2), kBlockSize);
  IoRequest* ws[] = {&w};
  EXPECT_EQ(dev_.submit_and_wait(ws).error(), EIO);
  EXPECT_EQ(w.result, EIO);

  AlignedBuf in(3);
  ASSERT_TRUE(dev_.read(10, in.data(), in.size()).ok());
  EXPECT_EQ(bytes_of(in.block(0)), bytes_of(b_.block(0)));
  EXPECT_EQ(std::memcmp(in.block(1), b_.block(1), 100), 0);
  EXPECT_EQ(std::memcmp(in.block(1) + 100, a_.block(1) + 100, kBlockSize - 100), 0);
  EXPECT_EQ(bytes_of(in.block(2)), bytes_of(a_.block(2)));
  // Only the next write tears.
  EXPECT_TRUE(dev_.write(10, b_.data(), 3 * kBlockSize).ok());
}

TEST_F(FaultDeviceTest, LatencyDelaysEveryRequest) {
  using namespace std::chrono;
  dev_.set_latency(milliseconds(15));
  auto start = steady_clock::now();
  ASSERT_TRUE(dev_.write(1, a_.data(), kBlockSize).ok());
  ASSERT_TRUE(dev_.read(1, b_.data(), kBlockSize).ok());
  ASSERT_TRUE(dev_.flush().ok());
  EXPECT_GE(steady_clock::now() - start, milliseconds(45));
}

TEST_F(FaultDeviceTest, BeforeWriteHookHoldsAWriteInFlight) {
  std::mutex mu;  // protects entered/release below
  std::condition_variable cv;
  bool entered = false, release = false;
  dev_.set_before_write([&](const IoRequest& r) {
    std::unique_lock lk(mu);
    entered = true;
    cv.notify_all();
    cv.wait(lk, [&] { return release; });
  });
  uint64_t writes_before = mem_.write_count();
  std::thread writer([&] { EXPECT_TRUE(dev_.write(8, a_.data(), kBlockSize).ok()); });
  {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return entered; });
  }
  // The window is open: the write was submitted but has not reached the
  // device, and other I/O still proceeds.
  EXPECT_EQ(mem_.write_count(), writes_before);
  AlignedBuf in(1);
  EXPECT_TRUE(dev_.read(8, in.data(), kBlockSize).ok());
  EXPECT_EQ(bytes_of(in.data()), std::vector<uint8_t>(kBlockSize, 0));
  {
    std::lock_guard lk(mu);
    release = true;
  }
  cv.notify_all();
  writer.join();
  EXPECT_EQ(mem_.write_count(), writes_before + 1);
}

TEST_F(FaultDeviceTest, CountsRequestsByKindAndKeepsBatchOrder) {
  dev_.fail_block(20, FaultOn::kReadWrite);
  IoRequest w1, bad, fl, r1;
  w1.op = IoOp::kWrite;
  w1.blocknr = 1;
  w1.add(a_.data(), kBlockSize);
  bad.op = IoOp::kWrite;
  bad.blocknr = 20;
  bad.add(a_.data(), kBlockSize);
  fl.op = IoOp::kFlush;
  r1.op = IoOp::kRead;
  r1.blocknr = 1;
  r1.add(b_.data(), kBlockSize);
  IoRequest* batch[] = {&w1, &bad, &fl, &r1};
  EXPECT_EQ(dev_.submit_and_wait(batch).error(), EIO);
  EXPECT_EQ(bad.result, EIO);
  EXPECT_EQ(w1.result, 0);
  EXPECT_EQ(r1.result, 0);
  EXPECT_EQ(bytes_of(b_.data()), bytes_of(a_.data()));
  EXPECT_EQ(dev_.writes(), 2u);
  EXPECT_EQ(dev_.reads(), 1u);
  EXPECT_EQ(dev_.flushes(), 1u);
  EXPECT_EQ(mem_.flush_count(), 1u);
  // The write before the flush in the batch is durable.
  EXPECT_EQ(mem_.durable_block(1), bytes_of(a_.data()));
}

TEST(FaultDeviceOverUring, InjectsFaultsInFrontOfARealDevice) {
  TempDir dir;
  OpenOptions o;
  o.create = true;
  o.create_size = 32 * kBlockSize;
  auto inner = open_device(dir.file("img"), o);
  ASSERT_TRUE(inner.ok());
  FaultDevice dev(std::move(*inner));
  EXPECT_EQ(dev.block_count(), 32u);
  AlignedBuf out(1), in(1);
  out.fill(4, 7);
  dev.fail_block(4, FaultOn::kRead);
  ASSERT_TRUE(dev.write(4, out.data(), kBlockSize).ok());
  EXPECT_EQ(dev.read(4, in.data(), kBlockSize).error(), EIO);
  dev.clear_faults();
  ASSERT_TRUE(dev.read(4, in.data(), kBlockSize).ok());
  EXPECT_TRUE(in == out);
}

// ---- MemDevice ----

// A device whose every batch with a flush in it takes 5 ms: the time
// CountingDevice must attribute to flushes, and only to flush-only calls.
class SlowFlushDevice : public MemDevice {
 public:
  using MemDevice::MemDevice;
  Status submit_and_wait(std::span<IoRequest*> reqs) override {
    for (const IoRequest* r : reqs)
      if (r->op == IoOp::kFlush) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        break;
      }
    return MemDevice::submit_and_wait(reqs);
  }
};

TEST(CountingDevice, CountsFlushesAndTimesThoseThatRunAlone) {
  CountingDevice dev(std::make_unique<SlowFlushDevice>(16));
  EXPECT_EQ(dev.flushes(), 0u);
  ASSERT_TRUE(dev.flush().ok());
  ASSERT_TRUE(dev.flush().ok());
  EXPECT_EQ(dev.flushes(), 2u);
  const uint64_t timed = dev.flush_ns();
  EXPECT_GE(timed, 10'000'000u) << "two flushes of 5 ms each";
  // A flush inside a batch of writes is counted, not timed: the batch's
  // time is the writes' as much as the flush's.
  std::vector<uint8_t> block(kBlockSize, 0x5a);
  IoRequest w, f;
  w.op = IoOp::kWrite;
  w.blocknr = 3;
  w.add(block.data(), kBlockSize);
  f.op = IoOp::kFlush;
  IoRequest* batch[] = {&w, &f};
  ASSERT_TRUE(dev.submit_and_wait(batch).ok());
  EXPECT_EQ(dev.flushes(), 3u);
  EXPECT_EQ(dev.flush_ns(), timed);
  EXPECT_EQ(dev.write_errors(), 0u);
}

TEST(MemDevice, CrashDropsUnflushedWritesAndKeepsFlushedOnes) {
  MemDevice mem(16);
  AlignedBuf a(1), b(1), c(1);
  a.fill(2, 1);
  b.fill(2, 2);
  c.fill(3, 3);
  ASSERT_TRUE(mem.write(2, a.data(), kBlockSize).ok());
  ASSERT_TRUE(mem.flush().ok());
  ASSERT_TRUE(mem.write(2, b.data(), kBlockSize).ok());
  ASSERT_TRUE(mem.write(3, c.data(), kBlockSize).ok());
  AlignedBuf in(1);
  ASSERT_TRUE(mem.read(2, in.data(), kBlockSize).ok());
  EXPECT_TRUE(in == b) << "reads see the volatile cache before a crash";

  mem.crash();
  EXPECT_EQ(mem.durable_block(2), bytes_of(a.data()));
  EXPECT_EQ(mem.durable_block(3), std::vector<uint8_t>(kBlockSize, 0));
  ASSERT_TRUE(mem.read(2, in.data(), kBlockSize).ok());
  EXPECT_TRUE(in == a);
}

TEST(MemDevice, TornWriteThenCrashLeavesOnlyFlushedPrefix) {
  MemDevice mem(16);
  FaultDevice dev(mem);
  AlignedBuf a(2), b(2);
  a.fill(0, 1);
  b.fill(0, 2);
  ASSERT_TRUE(dev.write(0, a.data(), a.size()).ok());
  ASSERT_TRUE(dev.flush().ok());
  dev.tear_next_write(0, kBlockSize);
  EXPECT_EQ(dev.write(0, b.data(), b.size()).error(), EIO);
  ASSERT_TRUE(dev.flush().ok());
  mem.crash();
  EXPECT_EQ(mem.durable_block(0), bytes_of(b.block(0)));
  EXPECT_EQ(mem.durable_block(1), bytes_of(a.block(1)));
}

// ---- OverlayDevice over MemDevice (fsck -n) ----

TEST(OverlayDevice, WritesStayInMemoryAndReadsSeeThem) {
  MemDevice mem(16);
  AlignedBuf base(4), mine(2);
  base.fill(4, 1);
  mine.fill(5, 2);
  ASSERT_TRUE(mem.write(4, base.data(), base.size()).ok());
  ASSERT_TRUE(mem.flush().ok());
  const uint64_t writes = mem.write_count(), flushes = mem.flush_count();

  OverlayDevice overlay(mem);
  ASSERT_TRUE(overlay.write(5, mine.data(), mine.size()).ok());
  ASSERT_TRUE(overlay.flush().ok());
  EXPECT_EQ(mem.write_count(), writes) << "the base device saw a write";
  EXPECT_EQ(mem.flush_count(), flushes) << "the base device saw a flush";
  EXPECT_EQ(overlay.blocks_held(), 2u);

  // One read across base, overlay, overlay, base blocks, in two segments.
  AlignedBuf in(4);
  IoRequest r;
  r.op = IoOp::kRead;
  r.blocknr = 4;
  r.add(in.block(0), kBlockSize);
  r.add(in.block(1), 3 * kBlockSize);
  IoRequest* rs[] = {&r};
  ASSERT_TRUE(overlay.submit_and_wait(rs).ok());
  EXPECT_EQ(bytes_of(in.block(0)), bytes_of(base.block(0)));
  EXPECT_EQ(bytes_of(in.block(1)), bytes_of(mine.block(0)));
  EXPECT_EQ(bytes_of(in.block(2)), bytes_of(mine.block(1)));
  EXPECT_EQ(bytes_of(in.block(3)), bytes_of(base.block(3)));
  // The base still holds its own bytes.
  AlignedBuf direct(1);
  ASSERT_TRUE(mem.read(5, direct.data(), kBlockSize).ok());
  EXPECT_EQ(bytes_of(direct.data()), bytes_of(base.block(1)));
}

TEST(OverlayDevice, BadRequestsFailAsTheBaseWouldAndOthersStillRun) {
  MemDevice mem(16);
  OverlayDevice overlay(mem);
  AlignedBuf buf(2);
  EXPECT_EQ(overlay.write(15, buf.data(), 2 * kBlockSize).error(), EINVAL) << "past the end";
  EXPECT_EQ(overlay.write(3, buf.data() + 1, kBlockSize).error(), EINVAL) << "unaligned";
  EXPECT_EQ(overlay.read(16, buf.data(), kBlockSize).error(), EINVAL);
  EXPECT_EQ(overlay.blocks_held(), 0u);
  IoRequest bad, good;
  bad.op = good.op = IoOp::kWrite;
  bad.blocknr = 20;
  bad.add(buf.block(0), kBlockSize);
  good.blocknr = 2;
  good.add(buf.block(1), kBlockSize);
  IoRequest* rs[] = {&bad, &good};
  EXPECT_EQ(overlay.submit_and_wait(rs).error(), EINVAL);
  EXPECT_EQ(bad.result, EINVAL);
  EXPECT_EQ(good.result, 0);
  EXPECT_EQ(overlay.blocks_held(), 1u);
}

}  // namespace
}  // namespace stablefs
