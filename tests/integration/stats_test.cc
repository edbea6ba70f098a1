// The live counters: published by the daemon in a shared-memory segment
// named after the mount, read by stablefs-stat from another process. The
// per-opcode request counters also show what the kernel caches under the
// entry/attribute/negative timeouts, so the tests of what long timeouts
// must not break (link counts, ctime, size and mtime as stat sees them)
// live here too.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>

#include "tests/integration/mount_fixture.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {
namespace {

using StatsTest = RealMount;

// Value of "key":N in stablefs-stat's JSON line, or -1.
long long json_field(const std::string& json, const std::string& key) {
  auto at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return -1;
  return std::stoll(json.substr(at + key.size() + 3));
}

CommandResult stat_json(const std::string& mnt) {
  return run_command({STAT_BIN, "--json", mnt}, std::chrono::seconds(20));
}

struct RequestStat {
  long long count = 0, total_ns = 0, max_ns = 0;
};
using RequestStats = std::map<std::string, RequestStat>;

// Every {"count":..,"total_ns":..,"max_ns":..} object of stablefs-stat
// --json by name: the opcodes under "ops" and getxattr_security_capability.
RequestStats request_stats(const std::string& mnt) {
  CommandResult r = stat_json(mnt);
  EXPECT_TRUE(r.ok()) << r.describe() << ": " << r.output;
  static const std::regex kStat(
      R"re("([A-Za-z0-9_]+)":\{"count":([0-9]+),"total_ns":([0-9]+),"max_ns":([0-9]+)\})re");
  RequestStats out;
  for (auto it = std::sregex_iterator(r.output.begin(), r.output.end(), kStat);
       it != std::sregex_iterator(); ++it)
    out[(*it)[1]] = {std::stoll((*it)[2]), std::stoll((*it)[3]), std::stoll((*it)[4])};
  EXPECT_TRUE(out.count("LOOKUP") && out.count("getxattr_security_capability")) << r.output;
  return out;
}

long long delta(const RequestStats& before, const RequestStats& after, const std::string& name) {
  auto b = before.find(name), a = after.find(name);
  if (a == after.end() || b == before.end()) return -1;
  return a->second.count - b->second.count;
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

// Where an fsync's time went: the commit is timed from its start to a
// durable commit block, and the backing store's flush inside it too. These
// are refreshed with the gauges (every 50 ms), so the reader polls.
TEST_F(StatsTest, CommitAndFlushTimesMoveWithAnFsync) {
  CommandResult before = stat_json(mnt());
  ASSERT_TRUE(before.ok()) << before.output;
  ASSERT_EQ(json_field(before.output, "journal_commit_ns_total"), 0) << before.output;
  const long long flushes0 = json_field(before.output, "device_flushes");
  ASSERT_GE(flushes0, 0) << before.output;

  ASSERT_EQ(write_file(path("f"), std::string(4096, 't')), 0);
  {
    UniqueFd fd = open_fd(path("f"), O_RDWR);
    ASSERT_EQ(fsync(fd.get()), 0);
  }
  CommandResult after;
  EXPECT_TRUE(wait_until(
      [&] {
        after = stat_json(mnt());
        return json_field(after.output, "journal_commit_ns_total") > 0;
      },
      std::chrono::seconds(5)))
      << after.output;
  EXPECT_GT(json_field(after.output, "device_flushes"), flushes0) << after.output;
  EXPECT_GT(json_field(after.output, "device_flush_ns_total"), 0) << after.output;
  const long long commit_ns = json_field(after.output, "journal_commit_ns_total");
  EXPECT_GT(json_field(after.output, "journal_commit_ns_max"), 0) << after.output;
  EXPECT_LE(json_field(after.output, "journal_commit_ns_max"), commit_ns) << after.output;
  EXPECT_EQ(json_field(after.output, "journal_checkpoints"), 0) << "nothing filled the log";
}

// The daemon's inode cache follows the kernel's: once the kernel forgets
// inodes (here: drop_caches), the daemon drops them too, and every file
// reads back intact through reloaded inodes.
TEST_F(StatsTest, InodeCacheShrinksWhenTheKernelForgets) {
  constexpr int kFiles = 6000;  // above the daemon's 4096-inode low mark
  ASSERT_EQ(::mkdir(path("d").c_str(), 0755), 0);
  for (int i = 0; i < kFiles; i++)
    ASSERT_EQ(write_file(path("d/" + std::to_string(i)), "file " + std::to_string(i)), 0) << i;
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

// --prometheus: the OpenMetrics text format, every sample line of the form
// NAME{LABELS} VALUE under a TYPE line of its family, ended by "# EOF";
// a counter moves after I/O.
TEST_F(StatsTest, PrometheusOutputParsesAndMovesWithIo) {
  auto scrape = [&] {
    CommandResult r = run_command({STAT_BIN, "--prometheus", mnt()}, std::chrono::seconds(20));
    EXPECT_TRUE(r.ok()) << r.describe() << ": " << r.output;
    return r.output;
  };
  auto bytes_written = [](const std::string& text) {
    std::smatch m;
    static const std::regex kLine(R"re(stablefs_bytes_written_total\{[^}]*\} ([0-9]+))re");
    return std::regex_search(text, m, kLine) ? std::stoll(m[1]) : -1;
  };
  const std::string before = scrape();
  static const std::regex kType(R"re(# TYPE (stablefs_[a-z_]+) (counter|gauge))re");
  static const std::regex kSample(
      R"re((stablefs_[a-z_]+)\{mountpoint="[^"]*",source="[^"]*"(,op="[A-Z_0-9]+")?\} [0-9]+(\.[0-9]+)?)re");
  std::istringstream lines(before);
  std::string line, family;
  int samples = 0;
  bool eof = false;
  while (std::getline(lines, line)) {
    ASSERT_FALSE(eof) << "text after # EOF: " << line;
    std::smatch m;
    if (line == "# EOF") {
      eof = true;
    } else if (std::regex_match(line, m, kType)) {
      family = m[1];
    } else if (line.rfind("# HELP " + family + " ", 0) == 0) {
    } else {
      ASSERT_TRUE(std::regex_match(line, m, kSample)) << "not a sample: " << line;
      std::string name = m[1];
      EXPECT_EQ(name.rfind(family, 0), 0u) << name << " outside its family " << family;
      samples++;
    }
  }
  EXPECT_TRUE(eof);
  EXPECT_GT(samples, 21);
  EXPECT_NE(before.find("op=\"WRITE\""), std::string::npos);
  ASSERT_EQ(write_file(path("f"), std::string(1 << 20, 'p')), 0);
  EXPECT_EQ(bytes_written(scrape()), bytes_written(before) + (1 << 20));
}

// -w adds per-second rates of the totals from the second print on.
TEST_F(StatsTest, WatchShowsRatesOfTotals) {
  ASSERT_EQ(write_file(path("f"), std::string(1 << 20, 'w')), 0);
  CommandResult r = run_command({"timeout", "-s", "INT", "2.5", STAT_BIN, "-w", mnt()},
                                std::chrono::seconds(20));
  EXPECT_NE(r.output.find("bytes_written            1048576  (1.0 MiB)"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("(1.0 MiB)  0 B/s"), std::string::npos) << "no rate: " << r.output;
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

// The request-counting and timeout fixtures below mount with exactly their
// own options, whatever INTEG_MOUNT_OPTS says: writeback_cache, for one,
// moves WRITEs to the kernel's flusher and ctime/mtime to the kernel's
// coarse clock, and these tests count requests and compare times on the
// default path.
class RequestCountTest : public RealMount {
 protected:
  std::string mount_options() const override { return ""; }
};

// One request of each kind, each answered by exactly one FUSE request the
// kernel cannot serve from a cache, counted by the daemon and read by
// another process.
TEST_F(RequestCountTest, EachRequestIsCountedUnderItsOpcode) {
  ASSERT_EQ(write_file(path("f"), "0123456789"), 0);
  ASSERT_EQ(::mkdir(path("dir").c_str(), 0755), 0);
  UniqueFd fd = open_fd(path("f"), O_RDWR);
  UniqueFd dir = open_fd(path("dir"), O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(fd.ok() && dir.ok());
  const RequestStats before = request_stats(mnt());

  ASSERT_EQ(fsync(fd.get()), 0);
  ASSERT_EQ(fsync(dir.get()), 0);
  ASSERT_EQ(lseek(fd.get(), 0, SEEK_DATA), 0);
  struct statvfs sv;
  ASSERT_EQ(statvfs(mnt().c_str(), &sv), 0);
  ASSERT_EQ(::mkdir(path("dir/sub").c_str(), 0755), 0);
  ASSERT_EQ(::rmdir(path("dir/sub").c_str()), 0);
  ASSERT_EQ(::link(path("f").c_str(), path("g").c_str()), 0);
  ASSERT_EQ(::rename(path("g").c_str(), path("h").c_str()), 0);
  ASSERT_EQ(renameat2(AT_FDCWD, path("h").c_str(), AT_FDCWD, path("i").c_str(), RENAME_NOREPLACE),
            0);
  ASSERT_EQ(::unlink(path("i").c_str()), 0);
  ASSERT_EQ(::symlink("f", path("s").c_str()), 0);
  ASSERT_EQ(setxattr(path("f").c_str(), "user.k", "v", 1, 0), 0);
  ASSERT_EQ(removexattr(path("f").c_str(), "user.k"), 0);
  ASSERT_EQ(::close(fd.release()), 0);  // FLUSH; RELEASE follows asynchronously

  const RequestStats after = request_stats(mnt());
  for (const char* op : {"FSYNC", "FSYNCDIR", "LSEEK", "STATFS", "MKDIR", "RMDIR", "LINK",
                         "RENAME", "RENAME2", "UNLINK", "SYMLINK", "SETXATTR", "REMOVEXATTR",
                         "FLUSH"})
    EXPECT_EQ(delta(before, after, op), 1) << op;
  const RequestStat& fsync_stat = after.at("FSYNC");
  EXPECT_GT(fsync_stat.max_ns, 0);
  EXPECT_LE(fsync_stat.max_ns, fsync_stat.total_ns);
  EXPECT_GE(after.at("LOOKUP").count, 1) << "the mkdir, link and symlink names were looked up";
}

// The daemon negotiates HANDLE_KILLPRIV_V2 itself (fs/kernel_channel.h),
// which libfuse 3.14 cannot: the kernel then asks at most once whether a
// file carries capabilities to drop, instead of before every write(2)
// (which cost one round trip per write).
TEST_F(RequestCountTest, WritesAreNotEachPrecededByAGetxattrOfSecurityCapability) {
  UniqueFd fd = open_fd(path("f"), O_RDWR | O_CREAT);
  ASSERT_TRUE(fd.ok());
  const RequestStats before = request_stats(mnt());
  constexpr int kWrites = 20;
  for (int i = 0; i < kWrites; i++) ASSERT_EQ(pwrite(fd.get(), "abcd", 4, i * 4), 4);
  const RequestStats after = request_stats(mnt());
  EXPECT_EQ(delta(before, after, "WRITE"), kWrites);
  EXPECT_LE(delta(before, after, "getxattr_security_capability"), 1);
  EXPECT_LE(delta(before, after, "GETXATTR"), 1);
}

// ---- what the kernel caches, and what it must not get wrong ----

// Timeouts far longer than any test: whatever stat shows below the kernel
// learned from a reply or worked out itself, never from an expiry.
class LongTimeoutsTest : public RealMount {
 protected:
  std::string mount_options() const override {
    return "entry_timeout=3600,attr_timeout=3600,negative_timeout=3600";
  }
};

class ZeroTimeoutsTest : public RealMount {
 protected:
  std::string mount_options() const override {
    return "entry_timeout=0,attr_timeout=0,negative_timeout=0";
  }
};

long long lookups_and_getattrs(const RequestStats& before, const RequestStats& after) {
  return delta(before, after, "LOOKUP") + delta(before, after, "GETATTR");
}

bool operator<(const timespec& a, const timespec& b) {
  return a.tv_sec != b.tv_sec ? a.tv_sec < b.tv_sec : a.tv_nsec < b.tv_nsec;
}

TEST_F(LongTimeoutsTest, RepeatedStatsAreAnsweredByTheKernel) {
  ASSERT_EQ(write_file(path("f"), "data"), 0);
  // Held open so that a drop_caches by a test running alongside cannot
  // evict the dentry.
  UniqueFd pin = open_fd(path("f"), O_RDONLY);
  ASSERT_EQ(stat_of(path("f")).st_size, 4);
  const RequestStats before = request_stats(mnt());
  for (int i = 0; i < 100; i++) ASSERT_EQ(stat_of(path("f")).st_size, 4);
  EXPECT_EQ(lookups_and_getattrs(before, request_stats(mnt())), 0);
}

TEST_F(ZeroTimeoutsTest, EveryStatAsksTheDaemon) {
  ASSERT_EQ(write_file(path("f"), "data"), 0);
  const RequestStats before = request_stats(mnt());
  for (int i = 0; i < 10; i++) ASSERT_EQ(stat_of(path("f")).st_size, 4);
  EXPECT_GE(lookups_and_getattrs(before, request_stats(mnt())), 10);
}

TEST_F(LongTimeoutsTest, AMissingNameIsLookedUpOnceAndAppearsWhenCreated) {
  const RequestStats before = request_stats(mnt());
  struct stat st;
  for (int i = 0; i < 20; i++) ASSERT_EQ(SFS_ERRNO_OF(::stat(path("later").c_str(), &st)), ENOENT);
  // Once; twice if a drop_caches by a test running alongside evicted the
  // negative dentry (nothing can pin it).
  EXPECT_LE(delta(before, request_stats(mnt()), "LOOKUP"), 2) << "later misses are cached";
  ASSERT_EQ(write_file(path("later"), "now"), 0);
  EXPECT_EQ(stat_of(path("later")).st_size, 3);
  ASSERT_EQ(::mkdir(path("d").c_str(), 0755), 0);
  ASSERT_EQ(::rename(path("later").c_str(), path("d/moved").c_str()), 0);
  EXPECT_EQ(SFS_ERRNO_OF(::stat(path("later").c_str(), &st)), ENOENT);
  EXPECT_EQ(slurp(path("d/moved")), "now");
}

TEST_F(ZeroTimeoutsTest, EveryMissIsAskedAgain) {
  const RequestStats before = request_stats(mnt());
  struct stat st;
  EXPECT_EQ(SFS_ERRNO_OF(::stat(path("none").c_str(), &st)), ENOENT);
  EXPECT_EQ(SFS_ERRNO_OF(::stat(path("none").c_str(), &st)), ENOENT);
  EXPECT_EQ(delta(before, request_stats(mnt()), "LOOKUP"), 2);
}

// The kernel's inode is shared by both names, and unlink drops its nlink
// and invalidates its ctime.
TEST_F(LongTimeoutsTest, LinkCountFollowsLinkAndUnlinkOfAnotherName) {
  ASSERT_EQ(write_file(path("a"), "x"), 0);
  UniqueFd fd = open_fd(path("a"), O_RDONLY);
  struct stat st = stat_of(path("a"));
  ASSERT_EQ(st.st_nlink, 1u);
  ASSERT_EQ(::link(path("a").c_str(), path("b").c_str()), 0);
  EXPECT_EQ(stat_of(path("a")).st_nlink, 2u);
  EXPECT_EQ(stat_of(path("b")).st_nlink, 2u);
  const struct stat linked = stat_of(path("a"));
  ASSERT_EQ(::unlink(path("b").c_str()), 0);
  const struct stat unlinked = stat_of(path("a"));
  EXPECT_EQ(unlinked.st_nlink, 1u);
  EXPECT_TRUE(linked.st_ctim < unlinked.st_ctim) << "unlink of the other name changes ctime";
  struct stat via_fd;
  ASSERT_EQ(fstat(fd.get(), &via_fd), 0);
  EXPECT_EQ(via_fd.st_nlink, 1u);
  ASSERT_EQ(::unlink(path("a").c_str()), 0);
  ASSERT_EQ(fstat(fd.get(), &via_fd), 0);
  EXPECT_EQ(via_fd.st_nlink, 0u);
}

TEST_F(LongTimeoutsTest, RenameOverAFileLeavesItsOpenFdWithNoLinks) {
  ASSERT_EQ(write_file(path("src"), "new"), 0);
  ASSERT_EQ(write_file(path("dst"), "old"), 0);
  UniqueFd old_fd = open_fd(path("dst"), O_RDONLY);
  const struct stat src = stat_of(path("src"));
  ASSERT_EQ(stat_of(path("dst")).st_nlink, 1u);
  ASSERT_EQ(::rename(path("src").c_str(), path("dst").c_str()), 0);
  struct stat st;
  ASSERT_EQ(fstat(old_fd.get(), &st), 0);
  EXPECT_EQ(st.st_nlink, 0u);
  EXPECT_EQ(stat_of(path("dst")).st_ino, src.st_ino);
  EXPECT_TRUE(src.st_ctim < stat_of(path("dst")).st_ctim) << "rename changes the moved ctime";
  EXPECT_EQ(SFS_ERRNO_OF(::stat(path("src").c_str(), &st)), ENOENT);
  EXPECT_EQ(slurp(path("dst")), "new");
}

TEST_F(LongTimeoutsTest, DirectoryLinkCountsFollowSubdirectories) {
  ASSERT_EQ(::mkdir(path("p").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(path("q").c_str(), 0755), 0);
  ASSERT_EQ(stat_of(path("p")).st_nlink, 2u);
  ASSERT_EQ(stat_of(path("q")).st_nlink, 2u);
  ASSERT_EQ(::mkdir(path("p/sub").c_str(), 0755), 0);
  EXPECT_EQ(stat_of(path("p")).st_nlink, 3u);
  ASSERT_EQ(::rename(path("p/sub").c_str(), path("q/sub").c_str()), 0);
  EXPECT_EQ(stat_of(path("p")).st_nlink, 2u);
  EXPECT_EQ(stat_of(path("q")).st_nlink, 3u);
  ASSERT_EQ(::rmdir(path("q/sub").c_str()), 0);
  EXPECT_EQ(stat_of(path("q")).st_nlink, 2u);
}

TEST_F(LongTimeoutsTest, ChmodChangesModeAndCtimeAtOnce) {
  ASSERT_EQ(write_file(path("f"), "x", 0644), 0);
  const struct stat before = stat_of(path("f"));
  ASSERT_EQ(::chmod(path("f").c_str(), 0600), 0);
  const struct stat after = stat_of(path("f"));
  EXPECT_EQ(after.st_mode & 07777, 0600u);
  EXPECT_TRUE(before.st_ctim < after.st_ctim);
  EXPECT_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
  EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
}

TEST_F(LongTimeoutsTest, AWriteThroughAnotherFdShowsInSizeAndMtime) {
  ASSERT_EQ(write_file(path("f"), ""), 0);
  const struct timespec old_times[2] = {{1000, 0}, {2000, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, path("f").c_str(), old_times, 0), 0);
  UniqueFd reader = open_fd(path("f"), O_RDONLY);
  struct stat st;
  ASSERT_EQ(fstat(reader.get(), &st), 0);
  ASSERT_EQ(st.st_size, 0);
  ASSERT_EQ(st.st_mtim.tv_sec, 2000);
  {
    UniqueFd writer = open_fd(path("f"), O_WRONLY);
    ASSERT_EQ(pwrite(writer.get(), "hello", 5, 0), 5);
  }
  ASSERT_EQ(fstat(reader.get(), &st), 0);
  EXPECT_EQ(st.st_size, 5);
  EXPECT_GT(st.st_mtim.tv_sec, 2000);
  const struct stat by_path = stat_of(path("f"));
  EXPECT_EQ(by_path.st_size, 5);
  EXPECT_EQ(by_path.st_mtim.tv_sec, st.st_mtim.tv_sec);
  char buf[16];
  EXPECT_EQ(pread(reader.get(), buf, sizeof buf, 0), 5) << "the reader sees the new size";
}

// relatime is the daemon's: a READ moves atime behind the kernel's cached
// attributes, and the kernel invalidates atime after every READ.
TEST_F(LongTimeoutsTest, AReadMovesAtimeAndStatShowsIt) {
  ASSERT_EQ(write_file(path("f"), "contents"), 0);
  const struct timespec old_times[2] = {{1000, 0}, {2000, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, path("f").c_str(), old_times, 0), 0);
  ASSERT_NO_FATAL_FAILURE(remount());  // a cold page cache: the read must reach the daemon
  ASSERT_EQ(stat_of(path("f")).st_atim.tv_sec, 1000);
  ASSERT_EQ(slurp(path("f")), "contents");
  EXPECT_GT(stat_of(path("f")).st_atim.tv_sec, 2000);
}

class StaleSegmentTest : public RealMount {
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
