// The state wac's worker processes share with their parent: one slot of
// counters per worker, the start barrier and the stop flag, all in one
// anonymous MAP_SHARED region (Boost.Interprocess) created before fork(),
// so nothing named outlives the run, even after kill -9.
//
// Each slot has exactly one writer (its worker); the parent reads slots
// only after it has reaped the worker, so relaxed atomics suffice and no
// lock is needed.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/base/result.h"
#include "tools/wac/latency_histogram.h"

namespace stablefs::wac {

// The step of a worker's loop that a failed system call belongs to.
enum class Step : int { kOpen, kMmap, kWrite, kSyncFileRange, kMsync, kFsync, kCount };
const char* step_name(Step s);

constexpr int kMaxErrno = 134;  // errno values above this share the last counter

struct WorkerSlot {
  std::atomic<uint64_t> ops{0};         // write(+sync) steps completed, failed or not
  std::atomic<uint64_t> failed_ops{0};  // ... of which some system call failed
  std::atomic<uint64_t> bytes{0};       // bytes written by successful writes/memcpys
  std::atomic<uint64_t> latency_max_ns{0};
  std::atomic<uint64_t> latency[kHistogramBuckets];
  std::atomic<uint64_t> errors[int(Step::kCount)][kMaxErrno + 1];

  void record_error(Step step, int errnum);
  void record_latency(uint64_t ns);
  LatencyHistogram histogram() const;
};

class SharedRun {
 public:
  // A zeroed region for `workers` slots.
  static Result<std::unique_ptr<SharedRun>> create(size_t workers, std::string* why);
  ~SharedRun();
  SharedRun(const SharedRun&) = delete;
  SharedRun& operator=(const SharedRun&) = delete;

  size_t workers() const { return workers_; }
  WorkerSlot& slot(size_t i);
  const WorkerSlot& slot(size_t i) const;

  // The stop flag: the parent raises it at the deadline or on a signal;
  // workers test it before each step.
  void request_stop();
  bool stop_requested() const;

  // Start barrier, so set-up (open, mmap, allocation) is not part of the
  // measured time: each worker calls ready_and_wait_for_go() once; the
  // parent calls wait_all_ready() and then go().
  void ready_and_wait_for_go();
  // False when not all workers reported ready before the deadline (one
  // died during set-up); the parent then stops the run.
  bool wait_all_ready(double deadline_s);
  void go();

 private:
  struct Impl;
  SharedRun(std::unique_ptr<Impl> impl, size_t workers);
  std::unique_ptr<Impl> impl_;
  size_t workers_;
};

}  // namespace stablefs::wac
