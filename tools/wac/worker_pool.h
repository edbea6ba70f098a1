// Runs a set of workers as forked processes for a duration and collects
// what they counted: the engine shared by stress mode and every scenario of
// the reproducer.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/base/result.h"
#include "tools/wac/latency_histogram.h"
#include "tools/wac/shared_run.h"
#include "tools/wac/workers.h"

namespace stablefs::wac {

struct KindTotals {
  unsigned workers = 0;
  uint64_t ops = 0;
  uint64_t failed_ops = 0;
  uint64_t bytes = 0;
  LatencyHistogram latency;  // of the write+sync step
};

struct ErrnoCount {
  Step step;
  int errnum;
  uint64_t count;
};

struct RunResult {
  double elapsed_s = 0;  // from the start barrier to the stop
  KindTotals write, mmap;
  LatencyHistogram latency;  // both kinds
  std::vector<ErrnoCount> errors;
  bool interrupted = false;     // SIGINT/SIGTERM ended it early
  unsigned failed_workers = 0;  // exited non-zero or killed by a signal
  std::string failure;          // why, when the workers could not all start

  uint64_t ops() const { return write.ops + mmap.ops; }
  uint64_t errors_on(Step step, int errnum) const;
};

// Forks one process per spec (each runs run_worker), starts them together,
// stops them after `duration_s` (or on SIGINT/SIGTERM, or when all have
// exited), signals each still-running child by PID, reaps exactly those
// PIDs, and merges their counters. An error only when nothing could run.
// `tick`, when given, is called about ten times a second while the workers
// run, with the seconds since the start and the bytes written so far (a
// relaxed read of slots still being written: a figure for a progress
// line, not a result).
using RunTick = std::function<void(double elapsed_s, uint64_t bytes)>;
Result<RunResult> run_workers(const std::vector<WorkerSpec>& specs, double duration_s,
                              std::string* why, const RunTick& tick = nullptr);

}  // namespace stablefs::wac
