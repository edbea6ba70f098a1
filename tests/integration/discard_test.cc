// mount -o discard on an image file: blocks freed by a durable commit are
// punched out of the image (fallocate PUNCH_HOLE through io_uring), so the
// host gets the space back; without the option they stay allocated. The
// NBD side (trims on the wire, after the freeing commit) is in
// nbd_protocol_test.cc, the crash safety in CrashSim.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "tests/integration/mount_fixture.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {
namespace {

// Host bytes the image occupies after an 8 MiB file is written, fsync'd,
// unlinked and the unlink fsync'd, relative to before the unlink.
class Discard : public RealMount {
 protected:
  std::string mount_options() const override { return options_; }
  bool mount_in_setup() const override { return false; }

  int64_t host_bytes_released(const std::string& options) {
    options_ = options;
    mount();
    if (HasFatalFailure()) return 0;
    int64_t released = write_and_unlink_big();
    unmount_only();
    return released;
  }

  // On the mounted filesystem: the 8 MiB file's life, then the host bytes
  // the image released over the unlink and its commit.
  int64_t write_and_unlink_big() {
    std::string data(8 << 20, 'd');
    for (size_t i = 0; i < data.size(); i += 4096) data[i] = char(i >> 12);
    EXPECT_EQ(write_file(path("big"), data), 0);
    {
      UniqueFd f = open_fd(path("big"), O_RDWR);
      EXPECT_EQ(::fsync(f.get()), 0) << strerror(errno);
    }
    int64_t before = host_bytes();
    uint64_t free_before = free_bytes(mnt());
    EXPECT_EQ(::unlink(path("big").c_str()), 0) << strerror(errno);
    EXPECT_TRUE(wait_for_freed(mnt(), free_before, data.size())) << "the blocks were never freed";
    UniqueFd dir = open_fd(mnt(), O_RDONLY | O_DIRECTORY);
    EXPECT_EQ(::fsync(dir.get()), 0) << strerror(errno);
    return before - host_bytes();
  }
  int64_t host_bytes() { return int64_t(stat_of(image()).st_blocks) * 512; }

  std::string options_;
};

TEST_F(Discard, FreedBlocksArePunchedOutOfTheImageOnlyWithTheOption) {
  if (std::getenv("INTEG_NBD") != nullptr) GTEST_SKIP() << "image-file behaviour";
  EXPECT_LT(host_bytes_released(""), int64_t(1) << 20) << "released without the option";
  EXPECT_GE(host_bytes_released("discard"), int64_t(7) << 20);
  CommandResult c = run_fsck({"--scrub"});
  EXPECT_TRUE(c.ok()) << c.describe() << "\n" << c.output;
}

// FITRIM (fstrim) on the mount's root, without the option: the free space
// is punched out of the image when asked, the data in use stays.
TEST_F(Discard, FitrimPunchesTheFreeSpaceOutOfTheImage) {
  if (std::getenv("INTEG_NBD") != nullptr) GTEST_SKIP() << "image-file behaviour";
  mount();
  ASSERT_FALSE(HasFatalFailure());
  const std::string kept(1 << 20, 'k');
  ASSERT_EQ(write_file(path("kept"), kept), 0);
  EXPECT_LT(write_and_unlink_big(), int64_t(1) << 20) << "released without the option";
  UniqueFd root = open_fd(mnt(), O_RDONLY | O_DIRECTORY);
  fstrim_range range{0, UINT64_MAX, 0};
  const int64_t before = host_bytes();
  ASSERT_EQ(::ioctl(root.get(), FITRIM, &range), 0) << strerror(errno);
  EXPECT_GE(range.len, uint64_t(8) << 20) << "bytes reported discarded";
  EXPECT_GE(before - host_bytes(), int64_t(7) << 20) << "the image kept the freed blocks";
  fstrim_range too_short{0, 100, 0};
  EXPECT_EQ(SFS_ERRNO_OF(::ioctl(root.get(), FITRIM, &too_short)), EINVAL);
  root.reset();
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(slurp(path("kept")), kept);
  unmount_only();
  CommandResult c = run_fsck({"--scrub"});
  EXPECT_TRUE(c.ok()) << c.describe() << "\n" << c.output;
}

}  // namespace
}  // namespace stablefs::integ
