// The live counters: published by the daemon in a shared-memory segment
// named after the mount, read by stablefs-stat from another process.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "tests/integration/mount_fixture.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {
namespace {

using StatsTest = MountedFs;

// Value of "key":N in stablefs-stat's JSON line, or -1.
long long json_field(const std::string& json, const std::string& key) {
  auto at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return -1;
  return std::stoll(json.substr(at + key.size() + 3));
}

CommandResult stat_json(const std::string& mnt) {
  return run_command({STAT_BIN, "--json", mnt}, std::chrono::seconds(20));
}

std::string shm_path(const std::string& mnt) {
  std::string name = "stablefs";
  for (char c : mnt) name.push_back(c == '/' ? '.' : c);
  return "/dev/shm/" + name;
}

TEST_F(StatsTest, AnotherProcessSeesTheCountersChangeLive) {
  CommandResult before = stat_json(mnt());
  ASSERT_TRUE(before.ok()) << before.describe() << ": " << before.output;
  long long written0 = json_field(before.output, "bytes_written");
  ASSERT_GE(written0, 0) << before.output;

  const std::string data(1 << 20, 'c');
  ASSERT_EQ(write_file(path("f"), data), 0);
  {
    UniqueFd fd = open_fd(path("f"), O_RDONLY);
    ASSERT_EQ(fsync(fd.get()), 0);
  }
  CommandResult after = stat_json(mnt());
  ASSERT_TRUE(after.ok()) << after.output;
  EXPECT_GE(json_field(after.output, "bytes_written"), written0 + (1 << 20)) << after.output;
  EXPECT_GE(json_field(after.output, "blocks_written"), 256) << after.output;
  EXPECT_GE(json_field(after.output, "journal_commits"), 1) << after.output;
  EXPECT_EQ(json_field(after.output, "integrity_errors_write"), 0);
  EXPECT_EQ(json_field(after.output, "integrity_errors_read"), 0);
}

// The daemon's inode cache follows the kernel's: once the kernel forgets
// inodes (here: drop_caches), the daemon drops them too, and every file
// reads back intact through reloaded inodes.
TEST_F(StatsTest, InodeCacheShrinksWhenTheKernelForgets) {
  constexpr int kFiles = 6000;  // above the daemon's 4096-inode low mark
  ASSERT_EQ(::mkdir(path("d").c_str(), 0755), 0);
  for (int i = 0; i < kFiles; i++)
    ASSERT_EQ(write_file(path("d/" + std::to_string(i)), "file " + std::to_string(i)), 0) << i;
  ::sync();
  long long peak = json_field(stat_json(mnt()).output, "cached_inodes");
  ASSERT_GE(peak, kFiles * 9 / 10) << "the inodes the kernel holds stay cached";
  {
    std::ofstream drop("/proc/sys/vm/drop_caches");
    ASSERT_TRUE(drop.good()) << "needs root to write /proc/sys/vm/drop_caches";
    drop << "2\n";
  }
  // The kernel's FORGETs arrive, then the flusher trims (about once a
  // second). The deadline only turns a hang into a failure.
  long long now = peak;
  for (int tries = 0; tries < 300 && now > kFiles / 2; tries++) {
    usleep(100 * 1000);
    now = json_field(stat_json(mnt()).output, "cached_inodes");
  }
  EXPECT_LE(now, kFiles / 2) << "peak " << peak;
  for (int i = 0; i < kFiles; i++) {
    ASSERT_EQ(slurp(path("d/" + std::to_string(i))), "file " + std::to_string(i)) << i;
  }
}

TEST_F(StatsTest, SegmentExistsExactlyWhileMounted) {
  struct stat st;
  EXPECT_EQ(::stat(shm_path(mnt()).c_str(), &st), 0) << shm_path(mnt());
  ASSERT_NO_FATAL_FAILURE(unmount_only());
  EXPECT_NE(::stat(shm_path(mnt()).c_str(), &st), 0) << "segment left after unmount";
  CommandResult r = stat_json(mnt());
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("no stablefs counters"), std::string::npos) << r.output;
}

class StaleSegmentTest : public MountedFs {
 protected:
  bool mount_in_setup() const override { return false; }
};

TEST_F(StaleSegmentTest, ACrashedDaemonsSegmentIsReplacedAtMount) {
  // What a kill -9 leaves behind: a segment nobody will remove.
  {
    std::ofstream stale(shm_path(mnt()));
    stale << std::string(4096, 'x');
  }
  ASSERT_NO_FATAL_FAILURE(mount());
  EXPECT_NE(daemon_log().find("stale counters segment"), std::string::npos) << daemon_log();
  CommandResult r = stat_json(mnt());
  ASSERT_TRUE(r.ok()) << r.output;
  EXPECT_EQ(json_field(r.output, "integrity_errors_write"), 0);
}

TEST_F(StatsTest, ReaderRefusesAMismatchedLayout) {
  ASSERT_NO_FATAL_FAILURE(unmount_only());
  // A segment with the right magic but another layout version.
  {
    std::ofstream seg(shm_path(mnt()), std::ios::binary);
    uint64_t m = 0x31305443534653ull;
    seg.write(reinterpret_cast<const char*>(&m), 8);
    uint32_t version = 99, size = 64;
    seg.write(reinterpret_cast<const char*>(&version), 4);
    seg.write(reinterpret_cast<const char*>(&size), 4);
    seg << std::string(4096, '\0');
  }
  CommandResult r = stat_json(mnt());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("layout version 99"), std::string::npos) << r.output;
  ::unlink(shm_path(mnt()).c_str());
}

}  // namespace
}  // namespace stablefs::integ
