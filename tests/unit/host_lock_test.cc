// Specification of HostLock: lock files that exclude, and vanish with
// their last holder.
#include "core/io/host_lock.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

namespace stablefs {
namespace {

class HostLockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = "/tmp/host-lock-XXXXXX";
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    path_ = dir_ + "/x.lock";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  bool exists() const { return ::access(path_.c_str(), F_OK) == 0; }

  std::string dir_, path_;
};

TEST_F(HostLockTest, ExcludesASecondHolderAndVanishesWithTheFirst) {
  auto a = HostLock::acquire(path_, false, 0);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(exists());
  EXPECT_EQ(HostLock::acquire(path_, false, 0).error(), EBUSY);
  EXPECT_EQ(HostLock::acquire(path_, true, 0).error(), EBUSY);
  a = Error{EIO};  // releases it
  EXPECT_FALSE(exists());
  EXPECT_TRUE(HostLock::acquire(path_, false, 0).ok());
}

TEST_F(HostLockTest, SharedHoldersKeepTheFileUntilTheLastLeaves) {
  auto a = HostLock::acquire(path_, true, 0);
  auto b = HostLock::acquire(path_, true, 0);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(HostLock::acquire(path_, false, 0).error(), EBUSY);
  a = Error{EIO};
  EXPECT_TRUE(exists()) << "removed while another reader still holds it";
  EXPECT_EQ(HostLock::acquire(path_, false, 0).error(), EBUSY);
  b = Error{EIO};
  EXPECT_FALSE(exists());
}

// A waiter that opened the file before its holder removed it must not end
// up holding a lock on the removed file (which would exclude no one): once
// it holds, the path names its file and a third party is refused. Whether
// the waiter opened before or after the removal is up to the scheduler, so
// the handover runs many times.
TEST_F(HostLockTest, AHandoverAcrossTheRemovalStillExcludes) {
  for (int round = 0; round < 200; round++) {
    auto a = HostLock::acquire(path_, false, 0);
    ASSERT_TRUE(a.ok());
    Result<std::unique_ptr<HostLock>> b = Error{EIO};
    std::thread waiter([&] { b = HostLock::acquire(path_, false, 10000); });
    a = Error{EIO};
    waiter.join();
    ASSERT_TRUE(b.ok()) << "round " << round;
    EXPECT_TRUE(exists()) << "round " << round;
    EXPECT_EQ(HostLock::acquire(path_, false, 0).error(), EBUSY) << "round " << round;
  }
}

}  // namespace
}  // namespace stablefs
