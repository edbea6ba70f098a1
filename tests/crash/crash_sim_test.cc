// Write-log crash simulation (dm-log-writes / xfstests generic/482 style):
// a deterministic workload runs on the engine over a RecordingDevice, then
// the image a power cut would leave is rebuilt at every flush boundary and
// at sampled points between flushes (unflushed writes dropped or torn), and
// each image must pass fsck --scrub, mount, and still hold every fsync'd
// (path, content) pair.
//
// CRASH_SIM_FULL=1 adds the long run: three more seeds of 3000 operations,
// every flush boundary and 2000 torn points each.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

#include <gtest/gtest.h>

#include "core/filesystem.h"
#include "core/fsck.h"
#include "core/io/borrowed_device.h"
#include "core/io/mem_device.h"
#include "core/io/recording_device.h"
#include "core/mkfs.h"
#include "core/mounted_fs.h"
#include "tests/crash/crash_check.h"
#include "tests/crash/crash_image.h"
#include "tests/crash/crash_workload.h"

namespace stablefs::crash {
namespace {

constexpr uint64_t kDeviceBlocks = 8192;  // 32 MiB: small images check fast

struct RecordedRun {
  std::vector<uint8_t> initial;
  std::vector<RecordedIo> log;
  std::vector<Expectation> expectations;
  WorkloadStats stats;
  uint64_t metadata_evictions = 0;  // the recorded run re-read evicted metadata
  uint64_t journaled_data_blocks = 0;  // rewrites committed through the log
  uint64_t deltas_logged = 0;  // metadata blocks logged as deltas (journal_deltas=on)
  uint64_t checkpoints = 0;
  Superblock final_sb;  // after the clean unmount
};

MountOptions sim_mount_options(uint32_t journal_data_pages, bool discard) {
  MountOptions o;
  o.discard = discard;
  o.journal_data_pages = journal_data_pages;
  o.cache_bytes = 4 << 20;
  o.commit_seconds = 3600;  // only fsync, journal space and unmount commit
  // Far less than the workload's metadata: blocks are evicted and read back
  // from home all through the run, so every crash point covers that too.
  o.meta_cache_bytes = 32 * kBlockSize;
  return o;
}

// mkfs, then the workload through the engine on a RecordingDevice, then a
// clean unmount (whose writes are in the log too).
// Short rewrites go through the journal unless journal_data_pages is 0.
// With native_fua the device advertises FUA and the journal commits with
// FUA writes instead of its last flush.
// With discard, the mount discards freed blocks (mount -o discard); the
// log holds each discard as a write of zeroes.
void record_workload(uint64_t seed, int ops, RecordedRun* out,
                     uint32_t journal_data_pages = MountOptions::kJournalDataPages,
                     bool native_fua = false, bool discard = false,
                     const MkfsOptions& mkfs = {}) {
  MemDevice dev(kDeviceBlocks, native_fua);
  ASSERT_TRUE(make_filesystem(dev, mkfs).ok());
  ASSERT_TRUE(dev.flush().ok());
  out->initial.resize(kDeviceBlocks * kBlockSize);
  ASSERT_TRUE(dev.read(0, out->initial.data(), out->initial.size()).ok());

  auto log = std::make_shared<WriteLog>();
  std::string why;
  auto m = Filesystem::mount(std::make_unique<RecordingDevice>(dev, log),
                             sim_mount_options(journal_data_pages, discard), &why);
  ASSERT_TRUE(m.ok()) << why;
  CrashWorkload w(**m, seed, [&] { return log->size(); });
  std::string e = w.setup();
  ASSERT_EQ(e, "");
  e = w.run(ops);
  ASSERT_EQ(e, "") << "seed " << seed;
  e = w.verify_all();
  ASSERT_EQ(e, "") << "seed " << seed;
  out->metadata_evictions = static_cast<MountedFs&>(**m).metadata_evictions();
  const JournalStats js = static_cast<MountedFs&>(**m).journal_stats();
  out->journaled_data_blocks = js.data_blocks_logged;
  out->deltas_logged = js.deltas_logged;
  out->checkpoints = js.checkpoints;
  ASSERT_TRUE((*m)->unmount().ok());
  m->reset();

  FsckOptions fo;
  fo.scrub = true;
  auto r = check_filesystem(dev, fo);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->errors, 0u) << "the workload's own clean image is inconsistent";
  std::vector<uint8_t> sb = dev.durable_block(kSuperblockA);
  out->final_sb = decode_superblock(sb.data(), kSuperblockA, kDeviceBlocks, nullptr).value();

  out->log = log->snapshot();
  out->expectations = w.oracle().expectations();
  out->stats = w.stats();
}

struct Summary {
  uint64_t images = 0, boundaries = 0, torn = 0;
  uint64_t inconsistent = 0, lost = 0;
  uint64_t pairs = 0, bytes = 0, replayed = 0, damaged_sb = 0, discarded = 0;
  std::string failures;  // the first few, in full
};

Summary check_points(const RecordedRun& run, std::vector<CrashPoint> points) {
  order_for_building(run.log, points);
  CrashImageBuilder builder(run.initial, run.log);
  Summary s;
  for (const auto& p : points) {
    auto v = check_crash_image([&]() -> std::unique_ptr<BlockDevice> { return builder.build(p); }, run.expectations, p.pos);
    s.images++;
    (p.drop ? s.torn : s.boundaries)++;
    s.pairs += v.pairs_checked;
    s.bytes += v.bytes_checked;
    s.replayed += v.replayed;
    s.discarded += v.discarded;
    s.damaged_sb += v.damaged_superblock_copies;
    if (!v.inconsistency.empty()) s.inconsistent++;
    if (!v.lost.empty()) s.lost++;
    if (!v.ok() && s.failures.size() < 8000)
      s.failures += "\n" + p.describe() + " of " + std::to_string(run.log.size()) + ": " +
                    v.inconsistency + (v.lost.empty() ? "" : "\n lost fsync'd data:" + v.lost);
  }
  return s;
}

void report(const char* name, const RecordedRun& run, const Summary& s) {
  uint64_t flushes = 0, writes = 0;
  for (const auto& e : run.log) (e.op == IoOp::kFlush ? flushes : writes)++;
  std::printf(
      "[crash-sim] %s: %llu ops, log %zu entries (%llu writes, %llu flushes), %zu promises; "
      "%llu crash images (%llu flush boundaries, %llu torn/dropped); %llu inconsistent, "
      "%llu with lost fsync'd data; %llu durable pairs / %llu bytes verified; %llu txns "
      "replayed by fsck; %llu images with one torn superblock copy (counted, not failed); "
      "%llu blocks logged as deltas, %llu checkpoints\n",
      name, (unsigned long long)run.stats.total, run.log.size(), (unsigned long long)writes,
      (unsigned long long)flushes, run.expectations.size(), (unsigned long long)s.images,
      (unsigned long long)s.boundaries, (unsigned long long)s.torn,
      (unsigned long long)s.inconsistent, (unsigned long long)s.lost,
      (unsigned long long)s.pairs, (unsigned long long)s.bytes, (unsigned long long)s.replayed,
      (unsigned long long)s.damaged_sb, (unsigned long long)run.deltas_logged,
      (unsigned long long)run.checkpoints);
  std::fflush(stdout);
  ::testing::Test::RecordProperty("crash_images", std::to_string(s.images));
}

TEST(RecordingDevice, LogsWritesAndFlushesInExecutionOrder) {
  MemDevice mem(16);
  auto log = std::make_shared<WriteLog>();
  RecordingDevice dev(mem, log);
  std::vector<uint8_t> a(2 * kBlockSize, 0xaa), b(kBlockSize, 0xbb), r(kBlockSize);
  ASSERT_TRUE(dev.write(3, a.data(), a.size()).ok());
  ASSERT_TRUE(dev.read(3, r.data(), r.size()).ok());  // reads are not logged
  ASSERT_TRUE(dev.flush().ok());
  ASSERT_TRUE(dev.write(9, b.data(), b.size()).ok());
  EXPECT_FALSE(dev.write(15, a.data(), a.size()).ok());  // past the end: not logged

  auto entries = log->snapshot();
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].op, IoOp::kWrite);
  EXPECT_EQ(entries[0].blocknr, 3u);
  EXPECT_EQ(entries[0].bytes, a);
  EXPECT_EQ(entries[1].op, IoOp::kFlush);
  EXPECT_EQ(entries[2].blocknr, 9u);
  EXPECT_EQ(entries[2].bytes, b);
  // It forwards: the wrapped device holds the data, and only the flushed
  // write survives its power cut.
  mem.crash();
  EXPECT_EQ(mem.durable_block(4), std::vector<uint8_t>(kBlockSize, 0xaa));
  EXPECT_EQ(mem.durable_block(9), std::vector<uint8_t>(kBlockSize, 0));
}

TEST(CrashImageBuilder, KeepsFlushedWritesAndDropsOrTearsUnflushedOnes) {
  const uint64_t blocks = 8;
  std::vector<RecordedIo> log = {
      {IoOp::kWrite, 1, std::vector<uint8_t>(kBlockSize, 0x11)},
      {IoOp::kFlush, 0, {}},
      {IoOp::kWrite, 2, std::vector<uint8_t>(2 * kBlockSize, 0x22)},
  };
  std::vector<uint8_t> initial(blocks * kBlockSize, 0x01);
  auto bounds = flush_boundaries(log);
  ASSERT_EQ(bounds.size(), 3u);  // start, after the flush, end of log
  EXPECT_EQ(bounds[1].pos, 2u);

  CrashImageBuilder builder(initial, log);
  auto at_flush = builder.build(bounds[1]);
  EXPECT_EQ(at_flush->block(1), std::vector<uint8_t>(kBlockSize, 0x11));
  EXPECT_EQ(at_flush->block(2), std::vector<uint8_t>(kBlockSize, 0x01));

  // Between flushes each unflushed block ends up old, new, or torn (new
  // leading sectors, old tail); over enough seeds all three happen, and
  // the flushed write is always there.
  bool saw_old = false, saw_new = false, saw_torn = false;
  for (uint64_t seed = 0; seed < 64; seed++) {
    auto dev = builder.build({3, true, seed});
    ASSERT_EQ(dev->block(1), std::vector<uint8_t>(kBlockSize, 0x11));
    auto blk = dev->block(3);
    size_t n = 0;
    while (n < kBlockSize && blk[n] == 0x22) n++;
    for (size_t i = n; i < kBlockSize; i++) ASSERT_EQ(blk[i], 0x01) << "seed " << seed;
    ASSERT_EQ(n % 512, 0u);
    saw_old |= n == 0;
    saw_new |= n == kBlockSize;
    saw_torn |= n > 0 && n < kBlockSize;
  }
  EXPECT_TRUE(saw_old && saw_new && saw_torn);
}

TEST(CrashSim, CheckerDetectsLostFsyncedData) {
  RecordedRun run;
  ASSERT_NO_FATAL_FAILURE(record_workload(7, 150, &run));
  ASSERT_FALSE(run.expectations.empty());
  // Claim the first promise held from the very start: the initial image
  // (an empty filesystem) cannot honour it.
  std::vector<Expectation> claimed = {run.expectations.front()};
  claimed[0].from = 0;
  CrashImageBuilder builder(run.initial, run.log);
  CrashPoint start{0};
  auto v = check_crash_image([&]() -> std::unique_ptr<BlockDevice> { return builder.build(start); }, claimed, 0);
  EXPECT_EQ(v.inconsistency, "");
  EXPECT_NE(v.lost, "") << "a promise the image cannot keep went unnoticed";
  EXPECT_EQ(v.pairs_checked, 1u);
}

// The checker compares symlink targets and xattrs too: a promise whose
// target or xattr differs from what the image holds is reported lost.
TEST(CrashSim, CheckerDetectsAWrongSymlinkTargetOrXattr) {
  RecordedRun run;
  ASSERT_NO_FATAL_FAILURE(record_workload(7, 400, &run));
  auto lost_if = [&](const std::function<bool(Expectation&)>& spoil) -> std::string {
    for (const Expectation& e : run.expectations) {
      Expectation claimed = e;
      if (!spoil(claimed)) continue;
      CrashImageBuilder builder(run.initial, run.log);  // rolls forward only
      CrashPoint at{e.from};
      auto v = check_crash_image([&]() -> std::unique_ptr<BlockDevice> { return builder.build(at); },
                                 {claimed}, e.from);
      EXPECT_EQ(v.inconsistency, "");
      return v.lost.empty() ? "not noticed: " + claimed.path : "";
    }
    return "no such promise in the workload";
  };
  EXPECT_EQ(lost_if([](Expectation& e) {
              if (!e.symlink) return false;
              e.content.back() ^= 1;
              return true;
            }),
            "")
      << "a wrong symlink target";
  EXPECT_EQ(lost_if([](Expectation& e) {
              if (e.symlink) return false;
              e.xattrs["user.never-set"] = "x";
              return true;
            }),
            "")
      << "an xattr the file does not have";
}

TEST(CrashSim, EveryFlushBoundaryOfA500OpWorkload) {
  RecordedRun run;
  ASSERT_NO_FATAL_FAILURE(record_workload(0x5eed0001, 500, &run));
  auto points = flush_boundaries(run.log);
  auto torn = sampled_torn_points(run.log, 100, 0x7042);
  points.insert(points.end(), torn.begin(), torn.end());
  Summary s = check_points(run, points);
  report("500-op workload, every flush boundary", run, s);
  EXPECT_GT(run.journaled_data_blocks, 0u) << "no rewrite went through the journal";
  EXPECT_GT(run.deltas_logged, 0u) << "no metadata block was logged as a delta";
  EXPECT_GT(s.pairs, 0u);
  EXPECT_EQ(s.inconsistent, 0u) << s.failures;
  EXPECT_EQ(s.lost, 0u) << s.failures;
}

// Lazy initialisation (core/lazy_init.h) with marks so low that the
// workload's creates and writes raise both: a crash at every flush of the
// raises (initialised blocks, then each superblock copy) and at torn points
// between them must leave a consistent image with every fsync'd byte.
TEST(CrashSim, EveryFlushBoundaryWhileTheHighWaterMarksRise) {
  MkfsOptions mo;
  mo.initial_inodes = kInodesPerBlock;
  mo.initial_data_blocks = 64;
  RecordedRun run;
  ASSERT_NO_FATAL_FAILURE(
      record_workload(0x5eed0003, 300, &run, MountOptions::kJournalDataPages, false, false, mo));
  ASSERT_TRUE(run.final_sb.incompat & kIncompatLazyInit);
  EXPECT_GT(run.final_sb.inode_hwm, uint64_t(kInodesPerBlock)) << "no inode raise happened";
  EXPECT_GT(run.final_sb.block_hwm, run.final_sb.data_start + 64) << "no block raise happened";
  auto points = flush_boundaries(run.log);
  auto torn = sampled_torn_points(run.log, 100, 0x7043);
  points.insert(points.end(), torn.begin(), torn.end());
  Summary s = check_points(run, points);
  report("300-op workload with low high-water marks, every flush boundary", run, s);
  EXPECT_GT(s.pairs, 0u);
  EXPECT_EQ(s.inconsistent, 0u) << s.failures;
  EXPECT_EQ(s.lost, 0u) << s.failures;
}

// A crash just before every flush, each with 8 random subsets of the
// unflushed writes kept.
std::vector<CrashPoint> random_subsets_before_flushes(const RecordedRun& run) {
  std::vector<CrashPoint> points;
  for (size_t i = 0; i < run.log.size(); i++) {
    if (run.log[i].op != IoOp::kFlush) continue;
    for (uint64_t seed = 0; seed < 8; seed++) points.push_back({i, true, i * 8 + seed});
  }
  return points;
}

// The same with every rewrite redirected to new blocks (journal_data=0).
TEST(CrashSim, EveryFlushBoundaryOfA500OpWorkloadWithoutJournaledData) {
  RecordedRun run;
  ASSERT_NO_FATAL_FAILURE(record_workload(0x5eed0001, 500, &run, 0));
  auto points = flush_boundaries(run.log);
  auto torn = sampled_torn_points(run.log, 100, 0x7043);
  points.insert(points.end(), torn.begin(), torn.end());
  Summary s = check_points(run, points);
  report("500-op workload, no journaled data, every flush boundary", run, s);
  EXPECT_EQ(run.journaled_data_blocks, 0u);
  EXPECT_GT(s.pairs, 0u);
  EXPECT_EQ(s.inconsistent, 0u) << s.failures;
  EXPECT_EQ(s.lost, 0u) << s.failures;
}

// The one-flush commit writes data, log and commit block together and
// flushes once, so a power cut can keep the commit block and lose a data
// block it refers to. Crash just before every flush with random subsets of
// the unflushed writes kept: replay must discard exactly those
// transactions whose tagged data is missing (none of which an fsync had
// returned for), and every image must stay consistent with every promise
// kept. Without the data-tag check at replay this test fails: the images
// map blocks that fail their checksums.
// Rewrites go to new blocks here (journal_data=0): a journaled rewrite is
// not tagged, its bytes are in the log (next test).
TEST(CrashSim, CommitBlockDurableBeforeItsDataIsDiscarded) {
  RecordedRun run;
  ASSERT_NO_FATAL_FAILURE(record_workload(0x5eed0a51, 400, &run, 0));
  Summary s = check_points(run, random_subsets_before_flushes(run));
  report("400-op workload, random subsets kept before every flush", run, s);
  std::printf("[crash-sim] async commits discarded by replay: %llu of %llu images\n",
              (unsigned long long)s.discarded, (unsigned long long)s.images);
  EXPECT_GT(s.discarded, 0u) << "no image had a commit block without its data: the test "
                                "does not exercise the case it is for";
  EXPECT_EQ(s.inconsistent, 0u) << s.failures;
  EXPECT_EQ(s.lost, 0u) << s.failures;
}

// The same cut with journaled rewrites: a kept commit block whose logged
// data block was lost (or torn) fails the data block's checksum, and the
// scan ends before that transaction, which no fsync had returned for.
TEST(CrashSim, RandomSubsetsBeforeEveryFlushWithJournaledData) {
  RecordedRun run;
  ASSERT_NO_FATAL_FAILURE(record_workload(0x5eed0a52, 400, &run));
  ASSERT_GT(run.journaled_data_blocks, 0u) << "no rewrite went through the journal";
  Summary s = check_points(run, random_subsets_before_flushes(run));
  report("400-op workload with journaled data, random subsets kept before every flush", run, s);
  EXPECT_EQ(s.inconsistent, 0u) << s.failures;
  EXPECT_EQ(s.lost, 0u) << s.failures;
}

// A device with native FUA (an NBD server that advertises it): commits
// without data tags are FUA writes and no flush, ordered commits end with a
// FUA commit block. Crash at every flush and FUA boundary, at sampled torn
// points, and inside every FUA batch with random subsets of its writes kept
// (each not yet acknowledged, so any of them may be lost or torn): replay
// must reject every partly kept commit and keep every promise. Letting a
// commit with data tags skip its flush (its data blocks were written
// earlier without FUA) loses fsync'd data here.
TEST(CrashSim, FuaCommitsStaySafeOnAVolatileCache) {
  RecordedRun run;
  ASSERT_NO_FATAL_FAILURE(record_workload(0x5eedf0a0, 500, &run,
                                          MountOptions::kJournalDataPages, true));
  uint64_t fua_writes = 0;
  for (const auto& e : run.log) fua_writes += e.fua;
  ASSERT_GT(fua_writes, 0u) << "the journal never used FUA";
  auto points = flush_boundaries(run.log);
  auto torn = sampled_torn_points(run.log, 200, 0x70f0a);
  points.insert(points.end(), torn.begin(), torn.end());
  for (size_t i = 0; i + 1 < run.log.size(); i++) {
    bool last_of_batch = run.log[i + 1].batch != run.log[i].batch;
    if (last_of_batch && run.log[i].fua)
      for (uint64_t seed = 0; seed < 4; seed++) points.push_back({i, true, i * 4 + seed});
  }
  Summary s = check_points(run, points);
  report("500-op workload on a FUA device", run, s);
  std::printf("[crash-sim] FUA writes in the log: %llu\n", (unsigned long long)fua_writes);
  EXPECT_GT(s.pairs, 0u);
  EXPECT_EQ(s.inconsistent, 0u) << s.failures;
  EXPECT_EQ(s.lost, 0u) << s.failures;
}

// mount -o discard: every discard is logged as a write of zeroes, the most
// a store may do with it. A block discarded before the commit that freed
// it is durable could be zeroed under a tree a crash brings back; crash at
// every flush boundary, at sampled torn points and before every flush with
// random subsets kept: no image may miss a byte.
TEST(CrashSim, DiscardsNeverReachBlocksACrashCouldStillNeed) {
  RecordedRun run;
  ASSERT_NO_FATAL_FAILURE(
      record_workload(0x5eedd15c, 500, &run, MountOptions::kJournalDataPages, false, true));
  uint64_t discards = 0;
  for (const auto& e : run.log) discards += e.discard;
  ASSERT_GT(discards, 0u) << "the workload freed nothing, or nothing was discarded";
  auto points = flush_boundaries(run.log);
  auto torn = sampled_torn_points(run.log, 200, 0x70d15c);
  points.insert(points.end(), torn.begin(), torn.end());
  auto subsets = random_subsets_before_flushes(run);
  points.insert(points.end(), subsets.begin(), subsets.end());
  Summary s = check_points(run, points);
  report("500-op workload with discard", run, s);
  std::printf("[crash-sim] discards in the log: %llu\n", (unsigned long long)discards);
  EXPECT_GT(s.pairs, 0u);
  EXPECT_EQ(s.inconsistent, 0u) << s.failures;
  EXPECT_EQ(s.lost, 0u) << s.failures;
}

// Acceptance: every flush boundary of a >= 2000-operation workload.
TEST(CrashSim, EveryFlushBoundaryOfA2000OpWorkload) {
  RecordedRun run;
  ASSERT_NO_FATAL_FAILURE(record_workload(0x5eed2000, 2000, &run));
  auto points = flush_boundaries(run.log);
  auto torn = sampled_torn_points(run.log, 300, 0x70422000);
  points.insert(points.end(), torn.begin(), torn.end());
  Summary s = check_points(run, points);
  report("2000-op workload, every flush boundary", run, s);
  EXPECT_GE(run.stats.total, 2000u);
  EXPECT_GT(run.deltas_logged, 0u) << "no metadata block was logged as a delta";
  EXPECT_GT(run.checkpoints, 1u) << "deltas across checkpoints are not exercised";
  EXPECT_GT(run.journaled_data_blocks, 0u) << "no rewrite went through the journal";
  EXPECT_GT(run.metadata_evictions, 0u);
  EXPECT_GT(s.pairs, 0u);
  EXPECT_EQ(s.inconsistent, 0u) << s.failures;
  EXPECT_EQ(s.lost, 0u) << s.failures;
}

// The long run: more seeds, longer workloads, many more torn points.
// Registered only as the `long`-labelled ctest entry crash_sim_long (not in
// the default suite); run it with `ctest -L long` or --gtest_filter.
TEST(CrashSim, LongRunMoreSeeds) {
  for (uint64_t seed : {0x10001ull, 0x10002ull, 0x10003ull}) {
    RecordedRun run;
    ASSERT_NO_FATAL_FAILURE(record_workload(seed, 3000, &run));
    auto points = flush_boundaries(run.log);
    auto torn = sampled_torn_points(run.log, 2000, seed * 31);
    points.insert(points.end(), torn.begin(), torn.end());
    Summary s = check_points(run, points);
    std::string name = "3000-op workload seed " + std::to_string(seed);
    report(name.c_str(), run, s);
    EXPECT_EQ(s.inconsistent, 0u) << s.failures;
    EXPECT_EQ(s.lost, 0u) << s.failures;
  }
}

}  // namespace
}  // namespace stablefs::crash
