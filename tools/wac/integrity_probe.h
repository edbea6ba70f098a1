// Where wac learns about integrity errors: a stablefs mount's live
// counters (shared-memory segment), or, on any other filesystem, the
// kernel log lines a DIF/DIX-capable stack prints for guard or reference
// tag errors.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/stats/live_counters.h"

namespace stablefs::wac {

struct IntegritySnapshot {
  uint64_t errors_write = 0;  // found by verify_writes
  uint64_t errors_read = 0;   // found by verified reads
  uint64_t writeback_waits = 0;
  uint64_t wait_ns_total = 0;
  uint64_t wait_ns_max = 0;  // not a delta: the maximum so far
  uint64_t shadow_copies = 0;
  uint64_t bounce_copies = 0;
  uint64_t pool_fallbacks = 0;
  uint64_t blocks_written = 0;

  uint64_t errors() const { return errors_write + errors_read; }
  // after - before, field by field (wait_ns_max stays `after`'s).
  IntegritySnapshot since(const IntegritySnapshot& before) const;
};

// The mountpoint that holds `path` (longest match in /proc/self/mountinfo).
std::string mountpoint_of(const std::string& path);

class CounterProbe {
 public:
  // Counters of the stablefs mount holding `path`, or null with *why set
  // ("no integrity counters available: ...").
  static std::unique_ptr<CounterProbe> open(const std::string& path, std::string* why);
  IntegritySnapshot snapshot() const;
  const std::string& mountpoint() const { return mountpoint_; }

 private:
  CounterProbe(std::unique_ptr<CountersView> view, std::string mnt)
      : view_(std::move(view)), mountpoint_(std::move(mnt)) {}
  std::unique_ptr<CountersView> view_;
  std::string mountpoint_;
};

// Kernel log records written after start(), filtered for integrity errors.
class KernelLogWatch {
 public:
  // Positions at the end of /dev/kmsg; false (with *why) when unreadable.
  bool start(std::string* why);
  // Integrity-looking lines since start() or the previous collect().
  std::vector<std::string> collect();
  bool started() const { return fd_ >= 0; }
  ~KernelLogWatch();

 private:
  int fd_ = -1;
};

// Whether one kernel log message looks like a T10 PI (DIF/DIX) error.
bool looks_like_integrity_error(const std::string& message);

}  // namespace stablefs::wac
