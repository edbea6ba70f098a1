// A crash while an xattr set grows from one block to an index of many,
// changes, shrinks back and grows again (core/FORMAT.md, "Xattr sets of
// several blocks"): at every flush boundary, at sampled torn points, and
// just before every flush with random subsets of the writes since the
// last one kept, the image must check clean, mount, and show the file's
// set exactly as one of the sets it had, never a mix of two, and never
// one older than the last fsync'd set. (Writing members home outside the
// journal fails it: checked by hand, the hash mismatches are found.)
#include <sys/stat.h>

#include <cstring>

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

namespace stablefs::crash {
namespace {

using XattrSet = std::map<std::string, std::string>;

constexpr uint64_t kBlocks = 8192;

MountOptions options() {
  MountOptions o;
  o.cache_bytes = 4 << 20;
  o.commit_seconds = 3600;  // only fsync and unmount commit
  o.meta_cache_bytes = 32 * kBlockSize;  // members are evicted and read back
  return o;
}

// The sets the file had, in order, with the log positions that bound when
// each can be seen after a crash.
struct History {
  std::vector<XattrSet> sets;
  std::vector<size_t> began;          // the change that made sets[i] began here
  std::vector<size_t> synced_at;      // sets[i] fsync'd by here (SIZE_MAX: never)
  size_t file_durable = SIZE_MAX;     // "f" and its empty set fsync'd
};

struct Recorded {
  std::vector<uint8_t> initial;
  std::vector<RecordedIo> log;
  History h;
};

void record(Recorded* out) {
  MemDevice dev(kBlocks);
  ASSERT_TRUE(make_filesystem(dev, {}).ok());
  ASSERT_TRUE(dev.flush().ok());
  out->initial.resize(kBlocks * kBlockSize);
  ASSERT_TRUE(dev.read(0, out->initial.data(), out->initial.size()).ok());
  auto log = std::make_shared<WriteLog>();
  std::string why;
  auto m = Filesystem::mount(std::make_unique<RecordingDevice>(dev, log), options(), &why);
  ASSERT_TRUE(m.ok()) << why;
  Filesystem& fs = **m;
  auto f = fs.mknod(kRootIno, "f", S_IFREG | 0644, 0, {});
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(fs.fsync(f->ino, false).ok());
  ASSERT_TRUE(fs.fsyncdir(kRootIno, false).ok());
  History& h = out->h;
  h.file_durable = log->size();
  h.sets.push_back({});
  h.began.push_back(0);
  h.synced_at.push_back(log->size());

  XattrSet now;
  auto change = [&](const std::string& name, const std::string* value) {
    h.began.push_back(log->size());
    if (value) {
      ASSERT_TRUE(fs.setxattr(f->ino, name, *value, 0).ok()) << name;
      now[name] = *value;
    } else {
      ASSERT_TRUE(fs.removexattr(f->ino, name).ok()) << name;
      now.erase(name);
    }
    h.sets.push_back(now);
    h.synced_at.push_back(SIZE_MAX);
  };
  auto set = [&](const std::string& name, const std::string& value) { change(name, &value); };
  // Each fsync is followed by a checkpoint, so the next changes are not
  // in a log that replay could write home again: what a crash leaves of
  // them is what the engine wrote, and when.
  auto sync = [&] {
    ASSERT_TRUE(fs.fsync(f->ino, false).ok());
    h.synced_at.back() = log->size();
    ASSERT_TRUE(static_cast<MountedFs&>(fs).checkpoint().ok());
  };
  for (int i = 0; i < 20; i++) set("user.a" + std::to_string(i), "value_" + std::to_string(i));
  sync();
  set("user.long", std::string(65536, 'L'));  // one block to an index of 17 members
  sync();
  for (int i = 0; i < 30; i++) {
    set("user.b" + std::to_string(i), std::string(100 + i, char('a' + i % 26)));
    if (i % 10 == 9) sync();
  }
  set("user.long", std::string(30000, 'M'));  // fewer members
  sync();
  change("user.long", nullptr);  // back to one block
  sync();
  set("user.long2", std::string(20000, 'N'));  // an index again, never fsync'd
  ASSERT_TRUE(fs.unmount().ok());
  out->log = log->snapshot();
}

// "" when the image's set of "f" is one the history allows at crash point p.
std::string check_set(BlockDevice& dev, const History& h, size_t pos) {
  std::string why;
  auto m = Filesystem::mount(std::make_unique<BorrowedDevice>(dev), options(), &why);
  if (!m.ok()) return "mount failed: " + why;
  Filesystem& fs = **m;
  std::string verdict;
  auto f = fs.lookup(kRootIno, "f");
  if (!f.ok()) {
    if (pos >= h.file_durable) verdict = "f is gone after its fsync";
  } else {
    XattrSet got;
    auto list = fs.listxattr(f->ino);
    if (!list.ok()) verdict = std::string("listxattr: ") + std::strerror(list.error());
    for (size_t at = 0; list.ok() && at < list->size();) {
      std::string name(list->c_str() + at);
      at += name.size() + 1;
      auto v = fs.getxattr(f->ino, name);
      if (!v.ok()) verdict = "getxattr " + name + ": " + std::strerror(v.error());
      else got[name] = *v;
    }
    size_t oldest = 0;
    for (size_t i = 0; i < h.sets.size(); i++)
      if (h.synced_at[i] <= pos) oldest = i;
    bool allowed = false;
    for (size_t i = oldest; i < h.sets.size() && h.began[i] <= pos; i++)
      allowed |= h.sets[i] == got;
    if (verdict.empty() && !allowed)
      verdict = "the set of " + std::to_string(got.size()) +
                " xattrs is none of the sets f had since its last fsync (set " +
                std::to_string(oldest) + ")";
    fs.forget(f->ino, 1);
  }
  Status u = fs.unmount();
  if (!u.ok() && verdict.empty()) verdict = std::string("unmount: ") + std::strerror(u.error());
  return verdict;
}

TEST(LargeXattrCrash, ASetGrowingPastOneBlockIsOldOrNewAtEveryFlushBoundary) {
  Recorded run;
  ASSERT_NO_FATAL_FAILURE(record(&run));
  std::vector<CrashPoint> points = flush_boundaries(run.log);
  auto torn = sampled_torn_points(run.log, 150, 0x7a77);
  points.insert(points.end(), torn.begin(), torn.end());
  // Just before every flush, 8 random subsets of the writes since the last
  // one: a member kept without the commit that wrote it, or the reverse.
  for (size_t i = 0; i < run.log.size(); i++)
    if (run.log[i].op == IoOp::kFlush)
      for (uint64_t seed = 0; seed < 8; seed++) points.push_back({i, true, i * 8 + seed});
  order_for_building(run.log, points);
  CrashImageBuilder builder(run.initial, run.log);
  size_t checked = 0, failed = 0;
  std::string failures;
  for (const CrashPoint& p : points) {
    auto v = check_crash_image([&]() -> std::unique_ptr<BlockDevice> { return builder.build(p); },
                               {}, p.pos);
    std::string why = v.inconsistency;
    if (why.empty()) {
      auto img = builder.build(p);
      why = check_set(*img, run.h, p.pos);
    }
    checked++;
    if (!why.empty() && failed++ < 5) failures += "\n" + p.describe() + ": " + why;
  }
  std::printf("[crash-sim] large xattr set: %zu crash images, %zu log entries, %zu sets\n",
              checked, run.log.size(), run.h.sets.size());
  EXPECT_GT(checked, 50u);
  EXPECT_EQ(failed, 0u) << failures;
}

}  // namespace
}  // namespace stablefs::crash
