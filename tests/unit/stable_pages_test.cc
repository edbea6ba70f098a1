// The stable-page policies, each proven deterministically: writeback is
// paused by an explicit hook between "checksum computed" and "I/O
// submitted" while a writer rewrites the same page.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "core/fsck.h"
#include "tests/unit/engine_fixture.h"

namespace stablefs {
namespace {

// How long a step that takes microseconds may take before the test says
// it never happened (instead of hanging until ctest's timeout).
constexpr std::chrono::seconds kDeadline{20};

// Holds the first writeback batch inside the write-after-checksum window
// until released.
class WritebackGate {
 public:
  explicit WritebackGate(MountedFs& fs) : fs_(fs) {
    fs_.writeback_hook_ = [this](uint64_t) {
      std::unique_lock lk(mu_);
      if (used_) return;
      used_ = true;
      in_window_ = true;
      cv_.notify_all();
      cv_.wait(lk, [&] { return released_; });
    };
  }
  // False when no writeback entered the window within the deadline.
  bool wait_in_window(std::chrono::seconds deadline) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, deadline, [&] { return in_window_; });
  }
  void release() {
    std::lock_guard lk(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  MountedFs& fs_;
  std::mutex mu_;  // protects the flags below
  std::condition_variable cv_;
  bool used_ = false, in_window_ = false, released_ = false;
};

class StablePagesTest : public EngineTest {
 protected:
  const std::string v1 = std::string(4096, '1');
  const std::string v2 = std::string(4096, '2');

  // Writes v1, starts an fsync whose writeback is held in the window, then
  // runs `rewrite` (which writes v2 to the same page) and returns whether
  // the rewrite finished while the window was still open.
  // `before` runs on the new, empty file first.
  template <class Check>
  void race(MountOptions o, Check check_while_open, const std::function<void()>& before = {}) {
    auto& fs = mount(o);
    ino_ = create("f");
    if (before) before();
    ASSERT_TRUE(fs_->write(ino_, 0, v1.data(), v1.size()).ok());
    WritebackGate gate(fs);
    std::thread flusher([&] { fsync_status_ = fs_->fsync(ino_, false); });
    if (!gate.wait_in_window(kDeadline)) {
      gate.release();
      flusher.join();
      fs.writeback_hook_ = nullptr;
      FAIL() << "the fsync's writeback never reached the write-after-checksum hook";
    }
    std::thread writer([&] {
      EXPECT_TRUE(fs_->write(ino_, 0, v2.data(), v2.size()).ok());
      wrote_ = true;
    });
    check_while_open(fs, writer);
    gate.release();
    flusher.join();
    if (writer.joinable()) writer.join();
    fs.writeback_hook_ = nullptr;
  }

  uint64_t ino_ = 0;
  std::atomic<bool> wrote_{false};
  Status fsync_status_;
};

// A rewritten page goes through the journal (journal_data=, the default):
// its bytes are copied while it is under writeback, and a writer waits
// for that copy as it waits for a write. The log then holds exactly the
// bytes the checksum was computed over (replay verifies them).
TEST_F(StablePagesTest, WaitPolicyBlocksTheWriterWhileAJournaledPageIsCopied) {
  uint64_t journaled_before = 0;
  race(
      journaled_rewrites(),
      [&](MountedFs& fs, std::thread&) {
        const auto end = std::chrono::steady_clock::now() + kDeadline;
        while (fs.page_cache_stats().writeback_waiters_now == 0) {
          ASSERT_LT(std::chrono::steady_clock::now(), end)
              << "the writer never waited on the page being journaled (wrote: " << wrote_.load()
              << ")";
          std::this_thread::yield();
        }
        EXPECT_FALSE(wrote_.load());
      },
      [&] {
        // On disk first, so that v1 is a rewrite of a written block.
        const std::string v0(4096, '0');
        ASSERT_TRUE(fs_->write(ino_, 0, v0.data(), v0.size()).ok());
        ASSERT_TRUE(fs_->fsync(ino_, false).ok());
        journaled_before = static_cast<MountedFs&>(*fs_).journal_stats().data_blocks_logged;
      });
  EXPECT_TRUE(fsync_status_.ok());
  EXPECT_TRUE(wrote_.load());
  EXPECT_EQ(static_cast<MountedFs&>(*fs_).journal_stats().data_blocks_logged, journaled_before + 1)
      << "the rewrite was not journaled";
  // v2 was never fsync'd: after a power cut the file holds v1, verified.
  crash();
  mount();
  std::string back(4096, '\0');
  ASSERT_TRUE(fs_->read(ino_, 0, 4096, back.data()).ok());
  EXPECT_EQ(back, v1);
}

TEST_F(StablePagesTest, WaitPolicyBlocksTheWriterUntilTheIoCompletes) {
  race(redirect_only(), [&](MountedFs& fs, std::thread&) {
    // The writer reaches wait_on_page_writeback and sleeps there; the
    // gauge is the only sign of it, so it is polled, against a deadline.
    const auto end = std::chrono::steady_clock::now() + kDeadline;
    while (fs.page_cache_stats().writeback_waiters_now == 0) {
      ASSERT_LT(std::chrono::steady_clock::now(), end)
          << "the writer never waited on the page under writeback (wrote: " << wrote_.load()
          << ")";
      std::this_thread::yield();
    }
    EXPECT_FALSE(wrote_.load());
  });
  EXPECT_TRUE(fsync_status_.ok());
  EXPECT_TRUE(wrote_.load());
  auto& fs = static_cast<MountedFs&>(*fs_);
  EXPECT_EQ(fs.page_cache_stats().writeback_waits, 1u);
  ASSERT_TRUE(fs_->fsync(ino_, false).ok());
  unmount();
  // The held write carried exactly v1; the next one v2. Both verify.
  EXPECT_EQ(count_blocks_with(dev_, v1), 1);
  EXPECT_EQ(count_blocks_with(dev_, v2), 1);
  mount();
  std::string back(4096, '\0');
  ASSERT_TRUE(fs_->read(ino_, 0, 4096, back.data()).ok());
  EXPECT_EQ(back, v2);
}

TEST_F(StablePagesTest, ShadowPolicyWriterDoesNotBlockAndLandsInAShadowPage) {
  MountOptions o;
  o.stable_pages = StablePages::kShadow;
  o.verify_writes = true;
  race(o, [&](MountedFs& fs, std::thread& writer) {
    writer.join();  // completes while the I/O is still held: no blocking
    EXPECT_TRUE(wrote_.load());
    EXPECT_EQ(fs.page_cache_stats().shadow_copies, 1u);
  });
  EXPECT_TRUE(fsync_status_.ok());  // verify_writes found the pre-write bytes intact
  auto& fs = static_cast<MountedFs&>(*fs_);
  EXPECT_EQ(fs.counters().integrity_errors_write, 0u);
  EXPECT_EQ(fs.page_cache_stats().writeback_waits, 0u);
  ASSERT_TRUE(fs_->fsync(ino_, false).ok());  // the next writeback carries v2
  unmount();
  EXPECT_EQ(count_blocks_with(dev_, v1), 1);
  EXPECT_EQ(count_blocks_with(dev_, v2), 1);
}

TEST_F(StablePagesTest, BouncePolicyWritesTheSnapshotTakenAtWritebackStart) {
  MountOptions o;
  o.stable_pages = StablePages::kBounce;
  o.verify_writes = true;
  race(o, [&](MountedFs& fs, std::thread& writer) {
    writer.join();
    EXPECT_TRUE(wrote_.load());
  });
  EXPECT_TRUE(fsync_status_.ok());
  auto& fs = static_cast<MountedFs&>(*fs_);
  EXPECT_EQ(fs.counters().integrity_errors_write, 0u);
  EXPECT_GE(fs.counters().bounce_copies, 1u);
  ASSERT_TRUE(fs_->fsync(ino_, false).ok());
  unmount();
  EXPECT_EQ(count_blocks_with(dev_, v1), 1);
  EXPECT_EQ(count_blocks_with(dev_, v2), 1);
}

TEST_F(StablePagesTest, OffPolicyLetsTheRaceThroughAndVerifyWritesCatchesIt) {
  MountOptions o;
  o.stable_pages = StablePages::kOff;
  o.verify_writes = true;
  race(o, [&](MountedFs&, std::thread& writer) {
    writer.join();  // modifies the page under the held I/O
    EXPECT_TRUE(wrote_.load());
  });
  // The write carried v2 under v1's checksum: exactly one integrity error,
  // surfaced to the application on fsync.
  EXPECT_EQ(fsync_status_.error(), EIO);
  auto& fs = static_cast<MountedFs&>(*fs_);
  EXPECT_EQ(fs.counters().integrity_errors_write, 1u);
}

// Without verify_writes, `off`'s race still cannot stay silent: the block
// whose bytes differ from its checksum is found by the next read (EIO,
// counted) and by fsck --scrub.
TEST_F(StablePagesTest, OffPolicyMismatchWithoutVerifyIsFoundByReadsAndScrub) {
  MountOptions o;
  o.stable_pages = StablePages::kOff;
  o.writeback_delay_ms = 3'600'000;  // the bad block must stay mapped
  race(o, [&](MountedFs&, std::thread& writer) {
    writer.join();
    EXPECT_TRUE(wrote_.load());
  });
  ASSERT_TRUE(fsync_status_.ok());  // nothing verified the write
  // Power cut before v2's own writeback: the committed mapping points at
  // the block that carries v2 under v1's checksum.
  crash();

  FsckOptions fo;
  fo.scrub = true;
  auto fsck = check_filesystem(dev_, fo);
  ASSERT_TRUE(fsck.ok());
  EXPECT_EQ(fsck->checksum_mismatches, 1u);

  auto& fs = mount();
  std::string back(4096, '\0');
  auto r = fs_->read(ino_, 0, back.size(), back.data());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), EIO);
  EXPECT_EQ(fs.counters().integrity_errors_read, 1u);
}

}  // namespace
}  // namespace stablefs
