// wac's pieces and its command line, no mount needed.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <vector>

#include "tests/wac/wac_test.h"
#include "tools/wac/integrity_probe.h"
#include "tools/wac/latency_histogram.h"
#include "tools/wac/workers.h"

namespace stablefs::wac {
namespace {

using test::parse_json;
using test::run_wac;

class TempDir {
 public:
  TempDir() {
    char t[] = "/tmp/wac-test.XXXXXX";
    path_ = mkdtemp(t) ? t : "";
  }
  ~TempDir() { (void)!std::system(("rm -rf '" + path_ + "'").c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(LatencyHistogram, QuantilesAreWithinOneSixteenthAndNeverAboveMax) {
  LatencyHistogram h;
  for (uint64_t v = 1; v <= 1000; v++) h.record(v * 1000);  // 1 us .. 1 ms
  h.note_max(1'000'000);
  EXPECT_EQ(h.count(), 1000u);
  uint64_t p50 = h.quantile(0.5), p99 = h.quantile(0.99);
  EXPECT_GE(p50, 500'000u);
  EXPECT_LE(p50, 500'000u + 500'000u / 16);
  EXPECT_GE(p99, 990'000u);
  EXPECT_LE(p99, 1'000'000u);
  EXPECT_EQ(h.quantile(1.0), 1'000'000u);
}

TEST(LatencyHistogram, BucketsCoverEveryValueMonotonically) {
  for (uint64_t v : {0ull, 1ull, 15ull, 16ull, 17ull, 1000ull, 123456789ull, 1ull << 39}) {
    size_t b = histogram_bucket(v);
    EXPECT_GE(histogram_bucket_upper(b), v) << v;
    if (b > 0) {
      EXPECT_LT(histogram_bucket_upper(b - 1), v) << v;
    }
  }
}

TEST(LatencyHistogram, MergingAddsCounts) {
  LatencyHistogram a, b;
  a.record(100);
  b.record(200);
  b.note_max(200);
  a.merge(b);
  EXPECT_EQ(a.count(), 2u);
  EXPECT_EQ(a.max(), 200u);
}

TEST(Pattern, EveryRewriteChangesTheBytesItCovers) {
  std::vector<uint8_t> a(4096), b(4096);
  for (uint64_t gen = 0; gen < 300; gen++) {
    fill_pattern(a.data(), a.size(), 42, 3, gen);
    fill_pattern(b.data(), b.size(), 42, 3, gen + 1);
    for (size_t i = 0; i < a.size(); i += 8) ASSERT_NE(a[i], b[i]) << "gen " << gen << " at " << i;
    uint8_t one_a, one_b;
    fill_pattern(&one_a, 1, 42, 3, gen);
    fill_pattern(&one_b, 1, 42, 3, gen + 1);
    ASSERT_NE(one_a, one_b);
  }
}

TEST(KernelLog, RecognisesDifGuardAndReferenceTagErrors) {
  EXPECT_TRUE(looks_like_integrity_error(
      "sd 2:0:0:0: [sdb] tag#0 Add. Sense: Logical block guard check failed"));
  EXPECT_TRUE(looks_like_integrity_error(
      "sd 2:0:0:0: [sdb] tag#3 Add. Sense: Logical block reference tag check failed"));
  EXPECT_TRUE(looks_like_integrity_error("scsi_debug: dif_verify: GUARD check failed on sector"));
  EXPECT_TRUE(looks_like_integrity_error("lpfc 0000:01:00.0: BlockGuard error: DIF"));
  EXPECT_FALSE(looks_like_integrity_error("EXT4-fs (sda1): mounted filesystem"));
  EXPECT_FALSE(looks_like_integrity_error("a different message"));
}

// Each bad argument is a usage error: exit 2 and a message naming it.
struct BadArgs {
  const char* what;
  std::vector<std::string> args;
  const char* message;
};

TEST(WacCommandLine, EveryBadArgumentExitsTwoWithAClearMessage) {
  TempDir dir;
  std::ofstream(dir.path() + "/full.img") << "not empty";
  const std::vector<BadArgs> cases = {
      {"file smaller than buffer", {"-l", "1024", "-b", "4096", dir.path()}, "smaller than the buffer"},
      {"unaligned O_DIRECT size", {"-d", "-b", "1000", dir.path()}, "multiples of 512"},
      {"unaligned O_DIRECT file size", {"-d", "-l", "70000", dir.path()}, "multiples of 512"},
      {"nonexistent path", {dir.path() + "/no/such/dir/file"}, "does not exist"},
      {"nonexistent reproduce dir", {"--reproduce", dir.path() + "/none"}, "no such directory"},
      {"zero workers", {"-n", "0", "-m", "0", dir.path()}, "zero workers"},
      {"zero reproduce workers", {"--reproduce", "--workers", "1", dir.path()}, "--workers"},
      {"zero duration", {"-t", "0", dir.path()}, "-t"},
      {"no target", {"-n", "2"}, "no FILE"},
      {"unknown option", {"--frobnicate", dir.path()}, "unknown option"},
      {"bad scenario", {"--reproduce", "--scenarios", "AZ", dir.path()}, "A-F"},
      {"bad policy", {"--reproduce", "--image", dir.path() + "/x.img", "--policies", "off,fast"},
       "unknown policy"},
      {"non-empty image without --force", {"--reproduce", "--image", dir.path() + "/full.img"},
       "--force"},
      {"scrub on a live mount", {"--reproduce", "--scrub", dir.path()}, "needs --image"},
  };
  for (const auto& c : cases) {
    CommandResult r = run_wac(c.args);
    EXPECT_EQ(r.exit_code(), 2) << c.what << ": " << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << c.what << ": " << r.output;
  }
}

TEST(WacCommandLine, HelpExplainsBothModesAndExitsZero) {
  CommandResult r = run_wac({"--help"});
  EXPECT_EQ(r.exit_code(), 0);
  EXPECT_NE(r.output.find("--reproduce"), std::string::npos);
  EXPECT_NE(r.output.find("--image"), std::string::npos);
  EXPECT_NE(r.output.find("Examples"), std::string::npos);
}

TEST(WacStress, JsonReportHasEveryFieldAndCountsMatchTheDuration) {
  TempDir dir;
  CommandResult r = run_wac({"-n", "3", "-m", "2", "-r", "-t", "1", "--seed", "7", "--json",
                             dir.path()});
  ASSERT_EQ(r.exit_code(), 0) << r.output;
  boost::property_tree::ptree j;
  std::string why;
  ASSERT_TRUE(parse_json(r.output, &j, &why)) << why;

  EXPECT_EQ(j.get<std::string>("mode"), "stress");
  EXPECT_EQ(j.get<uint64_t>("seed"), 7u);
  const double elapsed = j.get<double>("elapsed_s");
  EXPECT_GE(elapsed, 0.99);
  EXPECT_LT(elapsed, 3.0);
  EXPECT_FALSE(j.get<bool>("interrupted"));
  EXPECT_EQ(j.get<unsigned>("failed_workers"), 0u);

  const auto w = j.get_child("workers.write"), m = j.get_child("workers.mmap");
  EXPECT_EQ(w.get<unsigned>("workers"), 3u);
  EXPECT_EQ(m.get<unsigned>("workers"), 2u);
  const uint64_t ops = j.get<uint64_t>("total.ops");
  EXPECT_GT(w.get<uint64_t>("ops"), 0u);
  EXPECT_GT(m.get<uint64_t>("ops"), 0u);
  EXPECT_EQ(ops, w.get<uint64_t>("ops") + m.get<uint64_t>("ops"));
  // ops/s is ops over the measured time (at most one extra op per worker
  // finishes after the stop).
  EXPECT_NEAR(j.get<double>("total.ops_per_s"), double(ops) / elapsed, double(ops) / elapsed * 0.01);
  EXPECT_NEAR(w.get<double>("ops_per_s") * elapsed, double(w.get<uint64_t>("ops")), 1.0);

  // One latency sample per op, ordered percentiles.
  EXPECT_EQ(j.get<uint64_t>("latency_ns.count"), ops);
  const uint64_t p50 = j.get<uint64_t>("latency_ns.p50"), p99 = j.get<uint64_t>("latency_ns.p99"),
                 max = j.get<uint64_t>("latency_ns.max");
  EXPECT_GT(p50, 0u);
  EXPECT_LE(p50, p99);
  EXPECT_LE(p99, max);
  // Every op took time, and no worker can have done more than the
  // wall-clock allows.
  EXPECT_LE(double(w.get<uint64_t>("latency_ns.count")) * double(p50) / 2, elapsed * 3 * 1e9);
  EXPECT_EQ(j.get_child("errors").size(), 0u);
  EXPECT_EQ(j.get<uint64_t>("integrity.errors"), 0u);
  EXPECT_NE(j.get<std::string>("integrity.source"), "stablefs-counters");
}

TEST(WacStress, SigtermStopsTheRunEarlyAndStillReports) {
  TempDir dir;
  pid_t pid = -1;
  std::string log = dir.path() + "/out.json";
  pid = spawn_in_own_session({WAC_BIN, "-n", "2", "-t", "600", "--json", dir.path()}, log);
  ASSERT_GT(pid, 0);
  // Wait until set-up is done: the data file exists. Polling another
  // process's progress, against a deadline that turns a hang into a failure.
  const std::string data = dir.path() + "/wac.dat";
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (access(data.c_str(), F_OK) != 0 && std::chrono::steady_clock::now() < end) usleep(5000);
  if (access(data.c_str(), F_OK) != 0) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    FAIL() << "wac did not create " << data << " within 30 s";
  }
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  std::ifstream in(log);
  std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_TRUE(WIFEXITED(status)) << "wac died of signal " << WTERMSIG(status) << "; output:\n"
                                 << out;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  boost::property_tree::ptree j;
  std::string why;
  ASSERT_TRUE(parse_json(out, &j, &why)) << why;
  EXPECT_TRUE(j.get<bool>("interrupted"));
  EXPECT_LT(j.get<double>("elapsed_s"), 60.0);
}

}  // namespace
}  // namespace stablefs::wac
