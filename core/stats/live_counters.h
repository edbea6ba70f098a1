// Live counters of one mount, in a Boost.Interprocess shared-memory segment
// named after the mountpoint, so stablefs-stat and wac can read them from
// other processes while the filesystem runs.
//
// The daemon creates the segment at mount (replacing a stale one left by a
// crash) and removes it at unmount. The layout is versioned: a reader that
// finds another magic, version or size refuses instead of misreading.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "core/base/result.h"
#include "core/stats/request_counters.h"

namespace stablefs {

constexpr uint64_t kCountersMagic = 0x31305443534653ull;  // "SFSCT01"
// 2: cached_inodes, metadata cache; 3: per-opcode FUSE request counters;
// 4: journal_aborted; 5: read_only; 6: IOCTL requests; 7: journaled_data_blocks;
// 8: metadata_errors; 9: journal_deltas; 10: device_read_errors,
// device_write_errors, device_retries; 11: journal_commit_ns_total,
// journal_commit_ns_max, journal_checkpoints, journal_checkpoint_ns_total,
// device_flushes, device_flush_ns_total
constexpr uint32_t kCountersVersion = 11;

// Every field is an 8-byte lock-free atomic, so writers and readers in
// different processes need no lock.
struct LiveCounters {
  uint64_t magic = kCountersMagic;
  uint32_t version = kCountersVersion;
  uint32_t size = sizeof(LiveCounters);
  int64_t pid = 0;
  char mountpoint[512] = {};
  char source[512] = {};

  // Integrity (stable pages): a block whose bytes differ from its checksum.
  std::atomic<uint64_t> integrity_errors_write{0};  // found by verify_writes
  std::atomic<uint64_t> integrity_errors_read{0};   // found when reading
  // Writers that slept on a page under writeback, and for how long
  // (refreshed with the gauges, every 50 ms).
  std::atomic<uint64_t> writeback_waits{0};
  std::atomic<uint64_t> writeback_wait_ns_total{0};
  std::atomic<uint64_t> writeback_wait_ns_max{0};
  // Copies made instead of waiting.
  std::atomic<uint64_t> shadow_copies{0};
  std::atomic<uint64_t> bounce_copies{0};
  std::atomic<uint64_t> shadow_pool_fallbacks{0};  // pool empty: waited instead
  // Gauges, refreshed by the daemon every 50 ms.
  std::atomic<uint64_t> pages_under_writeback{0};
  std::atomic<uint64_t> dirty_pages{0};
  std::atomic<uint64_t> cached_inodes{0};  // the daemon's inode cache
  std::atomic<uint64_t> cached_metadata_blocks{0};
  std::atomic<uint64_t> metadata_evictions{0};  // counter, not a gauge
  // Throughput.
  std::atomic<uint64_t> bytes_written{0};  // accepted from applications
  std::atomic<uint64_t> bytes_read{0};     // read from the backing store
  std::atomic<uint64_t> blocks_written{0}; // data blocks written back
  // Journal.
  std::atomic<uint64_t> journal_commits{0};
  std::atomic<uint64_t> shadow_metadata_copies{0};
  std::atomic<uint64_t> journaled_data_blocks{0};  // written back through the log
  std::atomic<uint64_t> replayed_transactions{0};
  // 0, or the errno that aborted the journal: the filesystem is read-only
  // until it is unmounted and mounted again (which replays the log).
  std::atomic<uint64_t> journal_aborted{0};
  // 1 while the daemon refuses every change (mounted `ro`, or the journal
  // aborted); a gauge. The mount helper reads it to refuse `remount,rw`.
  std::atomic<uint64_t> read_only{0};
  // Requests that failed because a metadata block (or a record in one)
  // failed verification; errors= says what the mount then did.
  std::atomic<uint64_t> metadata_errors{0};
  // Metadata blocks the journal logged as deltas (journal_deltas=).
  std::atomic<uint64_t> journal_deltas{0};
  // The backing store (refreshed): requests it failed, reads and writes
  // (flushes, discards) of data and metadata alike, after its own retries;
  // and requests it resubmitted after a transient failure.
  std::atomic<uint64_t> device_read_errors{0};
  std::atomic<uint64_t> device_write_errors{0};
  std::atomic<uint64_t> device_retries{0};
  // Where an fsync's time goes (refreshed): commits from their start to a
  // durable commit block, summed and the longest; checkpoints (writing the
  // logged blocks home) and their time; the backing store's flushes and
  // the time it took for them. The journal's share of a commit is
  // journal_commit_ns less the flushes inside it.
  std::atomic<uint64_t> journal_commit_ns_total{0};
  std::atomic<uint64_t> journal_commit_ns_max{0};
  std::atomic<uint64_t> journal_checkpoints{0};
  std::atomic<uint64_t> journal_checkpoint_ns_total{0};
  std::atomic<uint64_t> device_flushes{0};
  std::atomic<uint64_t> device_flush_ns_total{0};
  // Bumped by the daemon on every gauge refresh: readers can tell it is alive.
  std::atomic<uint64_t> heartbeat{0};
  // FUSE requests by opcode, counted by the adapter (fs/request.h).
  RequestCounters requests;
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);

// "stablefs.tmp.x.mnt" for /tmp/x/mnt: a valid shm name derived from the
// canonical mountpoint path (long paths are hashed).
std::string counters_segment_name(const std::string& canonical_mountpoint);

// The counters this process publishes, for code that reaches the engine
// only through the Filesystem interface: the FUSE adapter counts requests
// here. A daemon serves one mount, so there is at most one segment per
// process (the newest wins if a test makes more). The pointer keeps the
// mapping alive after the segment is removed at unmount: a request still
// being answered then counts into memory no reader can find any more.
// nullptr when this process publishes no segment.
//
// Defined here, not in live_counters.cc, so the adapter library needs no
// link dependency on the engine (fs/CMakeLists.txt).
namespace published_detail {
inline std::mutex mu;
inline std::weak_ptr<LiveCounters> counters;  // guarded by mu
}  // namespace published_detail

inline std::shared_ptr<LiveCounters> published_counters() {
  std::lock_guard lk(published_detail::mu);
  return published_detail::counters.lock();
}

// The daemon's side: creates (or replaces a stale) segment and removes it
// on destruction. The newest segment is the one published_counters() returns.
class CountersSegment {
 public:
  static Result<std::unique_ptr<CountersSegment>> create(const std::string& mountpoint,
                                                         const std::string& source,
                                                         std::string* note);
  ~CountersSegment();
  LiveCounters& counters() { return *counters_; }

 private:
  struct Impl;
  explicit CountersSegment(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  // Owns the mapping (shared with published_counters() callers).
  std::shared_ptr<LiveCounters> counters_;
};

// A reader's side: maps an existing segment read-only. ENOENT when the
// mount has none (not stablefs, or not mounted); EPROTO with *why on a
// layout mismatch.
class CountersView {
 public:
  static Result<std::unique_ptr<CountersView>> open(const std::string& mountpoint,
                                                    std::string* why);
  ~CountersView();
  const LiveCounters& counters() const { return *counters_; }

 private:
  struct Impl;
  explicit CountersView(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  const LiveCounters* counters_ = nullptr;
};

}  // namespace stablefs
