// Stress mode's report, as text for people and as JSON for scripts.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "tools/wac/integrity_probe.h"
#include "tools/json_writer.h"
#include "tools/wac/options.h"
#include "tools/wac/worker_pool.h"

namespace stablefs::wac {

// What a run saw besides its own counters.
struct IntegrityObservation {
  bool have_counters = false;
  std::string counters_note;  // why there are none
  std::string mountpoint;
  IntegritySnapshot delta;    // counters after - before
  bool have_kernel_log = false;
  std::string kernel_log_note;
  std::vector<std::string> kernel_lines;  // integrity-looking kernel log lines

  // Integrity errors seen, whichever the source.
  uint64_t errors() const { return have_counters ? delta.errors() : kernel_lines.size(); }
};

struct StressReport {
  const Options* options = nullptr;
  std::string file;
  RunResult run;
  IntegrityObservation integrity;
};

void print_stress_text(FILE* out, const StressReport& r);
void print_stress_json(FILE* out, const StressReport& r);

// Shared with the reproducer's report.
std::string human_ns(uint64_t ns);
std::string errno_name(int errnum);
void json_run(JsonWriter& j, const RunResult& run);
void json_integrity(JsonWriter& j, const IntegrityObservation& obs);
std::string sync_description(const SyncSteps& s, bool mmap);

}  // namespace stablefs::wac
