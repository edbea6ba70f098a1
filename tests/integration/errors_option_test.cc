// errors=remount-ro|continue on a real mount: a subdirectory's block is
// damaged in the unmounted image, the mount meets it at run time, and
// - every mode answers the request that met it with EIO and keeps reading
//   what is intact;
// - remount-ro (the default) then refuses every change with EROFS, shows
//   read_only 1 in stablefs-stat and says so in the log, and at unmount
//   still writes back what was accepted before;
// - continue goes on accepting changes, which survive a remount.
// Both count the failed requests (metadata_errors in stablefs-stat).
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "core/base/format.h"
#include "tests/integration/image_file.h"
#include "tests/integration/mount_fixture.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {
namespace {

// Value of "key":N in stablefs-stat's JSON line, or -1.
long long stat_field(const std::string& mnt, const std::string& key) {
  CommandResult r = run_command({STAT_BIN, "--json", mnt}, std::chrono::seconds(20));
  EXPECT_TRUE(r.ok()) << r.describe() << ": " << r.output;
  auto at = r.output.find("\"" + key + "\":");
  if (at == std::string::npos) return -1;
  return std::stoll(r.output.substr(at + key.size() + 3));
}

class ErrorsOption : public RealMount {
 protected:
  std::string image_size() const override { return "64M"; }
  bool mount_in_setup() const override { return false; }
  std::string mount_options() const override { return options_; }

  // sub/ with 20 files and an intact file beside it; then sub's directory
  // block is damaged in the unmounted image.
  void make_damaged_subdirectory() {
    ASSERT_NO_FATAL_FAILURE(mount());
    ASSERT_EQ(mkdir(path("sub").c_str(), 0755), 0);
    for (int i = 0; i < 20; i++) ASSERT_EQ(write_file(path("sub/f" + std::to_string(i)), "x"), 0);
    ASSERT_EQ(write_file(path("outside"), intact_), 0);
    const uint64_t sub = stat_of(path("sub")).st_ino;
    ASSERT_NO_FATAL_FAILURE(unmount_only());
    std::string why;
    auto sb = load_superblock(image(), &why);
    ASSERT_TRUE(sb.has_value()) << why;
    auto blocks = find_meta_blocks(image(), sb->data_start, kMagicDirectory, sub);
    ASSERT_EQ(blocks.size(), 1u);
    ASSERT_TRUE(flip_byte(image(), blocks[0] * kBlockSize + kMetaHeaderSize + 3));
  }

  // The damage met at run time: EIO for the requests that need the block,
  // never a crash, an empty listing or ENOENT; the intact file reads.
  void meet_the_damage() {
    EXPECT_EQ(list_errno(path("sub")), EIO);
    struct stat st;
    EXPECT_EQ(SFS_ERRNO_OF(::stat(path("sub/f3").c_str(), &st)), EIO);
    EXPECT_TRUE(same_bytes(slurp(path("outside")), intact_));
    EXPECT_GE(stat_field(mnt(), "metadata_errors"), 1);
  }

  std::string options_;
  const std::string intact_ = std::string(10000, 'i');
};

TEST_F(ErrorsOption, RemountRoRefusesChangesAfterMetadataCorruptionAndKeepsReading) {
  ASSERT_NO_FATAL_FAILURE(make_damaged_subdirectory());
  options_ = "errors=remount-ro";
  ASSERT_NO_FATAL_FAILURE(mount());
  // Accepted before the damage is met, never fsync'd: still written at unmount.
  ASSERT_EQ(write_file(path("before"), "accepted before"), 0);
  EXPECT_EQ(stat_field(mnt(), "read_only"), 0);

  ASSERT_NO_FATAL_FAILURE(meet_the_damage());
  EXPECT_EQ(stat_field(mnt(), "read_only"), 1);
  EXPECT_EQ(SFS_ERRNO_OF(::mkdir(path("d").c_str(), 0755)), EROFS);
  EXPECT_EQ(write_file(path("outside"), "overwrite"), EROFS);
  EXPECT_TRUE(same_bytes(slurp(path("outside")), intact_)) << "reads go on";
  EXPECT_NE(daemon_log().find("errors=remount-ro"), std::string::npos) << daemon_log();

  ASSERT_NO_FATAL_FAILURE(unmount_only());
  options_.clear();
  ASSERT_NO_FATAL_FAILURE(mount());
  EXPECT_EQ(slurp(path("before")), "accepted before");
}

// No errors= at all behaves as remount-ro.
TEST_F(ErrorsOption, TheDefaultIsRemountRo) {
  ASSERT_NO_FATAL_FAILURE(make_damaged_subdirectory());
  ASSERT_NO_FATAL_FAILURE(mount());
  ASSERT_NO_FATAL_FAILURE(meet_the_damage());
  EXPECT_EQ(stat_field(mnt(), "read_only"), 1);
  EXPECT_EQ(SFS_ERRNO_OF(::mkdir(path("d").c_str(), 0755)), EROFS);
}

TEST_F(ErrorsOption, ContinueFailsOnlyTheRequestThatMeetsTheDamage) {
  ASSERT_NO_FATAL_FAILURE(make_damaged_subdirectory());
  options_ = "errors=continue";
  ASSERT_NO_FATAL_FAILURE(mount());
  ASSERT_NO_FATAL_FAILURE(meet_the_damage());
  EXPECT_EQ(stat_field(mnt(), "read_only"), 0);
  // Again: still EIO, and counted again.
  const long long seen = stat_field(mnt(), "metadata_errors");
  EXPECT_EQ(list_errno(path("sub")), EIO);
  EXPECT_GT(stat_field(mnt(), "metadata_errors"), seen);
  // Changes elsewhere go on.
  ASSERT_EQ(mkdir(path("d").c_str(), 0755), 0);
  ASSERT_EQ(write_file(path("d/after"), "written after"), 0);
  EXPECT_NE(daemon_log().find("errors=continue"), std::string::npos) << daemon_log();

  ASSERT_NO_FATAL_FAILURE(unmount_only());
  options_.clear();
  ASSERT_NO_FATAL_FAILURE(mount());
  EXPECT_EQ(slurp(path("d/after")), "written after");
  EXPECT_EQ(list_errno(path("sub")), EIO) << "the damage is still there for fsck";
}

TEST_F(ErrorsOption, AnUnknownValueIsRefused) {
  DaemonLaunch l = launch_daemon(image(), mnt(), {"-o", "errors=panic"});
  EXPECT_FALSE(l.mounted);
  EXPECT_TRUE(l.exited && WIFEXITED(l.status) && WEXITSTATUS(l.status) != 0)
      << describe_wait_status(l.status);
  EXPECT_NE(l.log.find("invalid value for errors: 'panic'"), std::string::npos) << l.log;
}

}  // namespace
}  // namespace stablefs::integ
