// The reproducer's tables (scenario x ops, ops/s, integrity errors,
// writeback waits) and its JSON.
#include <algorithm>
#include <cinttypes>
#include <cstring>

#include "tools/wac/reproducer.h"

namespace stablefs::wac {
namespace {

double per_s(uint64_t n, double s) { return s > 0 ? double(n) / s : 0; }

uint64_t sync_eio(const RunResult& r) {
  return r.errors_on(Step::kSyncFileRange, EIO) + r.errors_on(Step::kMsync, EIO) +
         r.errors_on(Step::kFsync, EIO);
}

const char* verdict_text(int v) {
  switch (v) {
    case kExitOk: return "no integrity error (exit 0)";
    case kExitIntegrity: return "RACE REPRODUCED: integrity errors (exit 1)";
    default: return "run failed (exit 4)";
  }
}

std::string scrub_text(const ScrubResult& s) {
  if (!s.ran) return "not run";
  if (s.clean()) return "clean";
  return "NOT clean (fsck exit " + std::to_string(s.exit_code) + ")";
}

// Scenario letters present in any run, in order.
std::vector<char> scenarios_for_names(const std::vector<PolicyResult>& runs) {
  std::vector<char> names;
  for (const auto& p : runs)
    for (const auto& s : p.scenarios)
      if (std::find(names.begin(), names.end(), s.scenario.name) == names.end())
        names.push_back(s.scenario.name);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

void print_policy_table(FILE* out, const Options& o, const PolicyResult& p) {
  if (p.policy.empty())
    std::fprintf(out, "wac --reproduce on %s, -t %.1f s per scenario, -l %" PRIu64 " -b %" PRIu64 "\n",
                 p.target.c_str(), o.duration_s, o.file_size, o.buffer_size);
  else
    std::fprintf(out, "policy %s: stablefs -o %s, -t %.1f s per scenario, -l %" PRIu64 " -b %" PRIu64
                 "\n", p.policy.c_str(), p.mount_options.c_str(), o.duration_s, o.file_size,
                 o.buffer_size);
  if (!p.failure.empty()) std::fprintf(out, "  FAILED: %s\n", p.failure.c_str());
  bool counters = !p.scenarios.empty() && p.scenarios[0].integrity.have_counters;
  if (!p.scenarios.empty() && !counters) {
    std::fprintf(out, "  %s\n", p.scenarios[0].integrity.counters_note.c_str());
    std::fprintf(out, "  integrity column: %s\n",
                 p.scenarios[0].integrity.have_kernel_log
                     ? "kernel log lines that look like DIF/DIX guard/ref tag errors"
                     : p.scenarios[0].integrity.kernel_log_note.c_str());
  }
  if (!p.scenarios.empty())
    std::fprintf(out, "  %-4s %-32s %10s %10s %10s %10s %9s\n", "scen", "workers", "ops", "ops/s",
                 "integrity", "wb-waits", "sync-EIO");
  for (const auto& s : p.scenarios) {
    const auto& i = s.integrity;
    std::string waits = i.have_counters ? std::to_string(i.delta.writeback_waits) : "n/a";
    std::fprintf(out, "  %-4c %-32s %10" PRIu64 " %10.1f %10" PRIu64 " %10s %9" PRIu64 "\n",
                 s.scenario.name, s.scenario.what.c_str(), s.run.ops(),
                 per_s(s.run.ops(), s.run.elapsed_s), i.errors(), waits.c_str(),
                 sync_eio(s.run));
    if (!s.failure.empty()) std::fprintf(out, "       failed: %s\n", s.failure.c_str());
    for (const auto& l : i.kernel_lines) std::fprintf(out, "       kernel: %s\n", l.c_str());
  }
  if (!p.policy.empty()) std::fprintf(out, "  scrub: %s\n", scrub_text(p.scrub).c_str());
  if (p.protected_policy() && (p.integrity_errors() > 0 || (p.scrub.ran && !p.scrub.clean()))) {
    std::fprintf(out, "  STABLE-PAGE BUG: policy %s must never show integrity errors\n",
                 p.policy.c_str());
    size_t shown = 0;
    for (const auto& l : p.daemon_lines)
      if (shown++ < 10) std::fprintf(out, "    daemon: %s\n", l.c_str());
    if (p.scrub.ran && !p.scrub.clean()) std::fprintf(out, "    fsck: %s\n", p.scrub.output.c_str());
  }
  std::fprintf(out, "  verdict: %s\n\n", verdict_text(p.verdict()));
}

void print_comparison(FILE* out, const std::vector<PolicyResult>& runs) {
  if (runs.empty()) return;
  std::fprintf(out, "comparison: integrity errors (ops/s) per scenario and policy\n  %-4s", "scen");
  for (const auto& p : runs) std::fprintf(out, " %18s", p.policy.c_str());
  std::fprintf(out, "\n");
  for (const auto& sc : scenarios_for_names(runs)) {
    std::fprintf(out, "  %-4c", sc);
    for (const auto& p : runs) {
      const ScenarioResult* found = nullptr;
      for (const auto& s : p.scenarios)
        if (s.scenario.name == sc) found = &s;
      char cell[64] = "-";
      if (found)
        std::snprintf(cell, sizeof cell, "%" PRIu64 " (%.0f)", found->integrity.errors(),
                      per_s(found->run.ops(), found->run.elapsed_s));
      std::fprintf(out, " %18s", cell);
    }
    std::fprintf(out, "\n");
  }
  std::fprintf(out, "  %-4s", "wait");
  for (const auto& p : runs) {
    uint64_t w = 0;
    for (const auto& s : p.scenarios) w += s.integrity.delta.writeback_waits;
    std::fprintf(out, " %18" PRIu64, w);
  }
  std::fprintf(out, "   (writeback waits, all scenarios)\n  %-4s", "scrb");
  for (const auto& p : runs) std::fprintf(out, " %18s", scrub_text(p.scrub).substr(0, 18).c_str());
  std::fprintf(out, "\n  %-4s", "exit");
  for (const auto& p : runs) std::fprintf(out, " %18d", p.verdict());
  std::fprintf(out, "\n");
  int code = combined_exit_code(runs);
  const char* meaning = code == kExitOk         ? "the demonstration worked"
                        : code == kExitIntegrity ? "a protected policy showed integrity errors"
                        : code == kExitNoRepro   ? "off did not reproduce the race; try a longer -t"
                                                 : "a run failed";
  std::fprintf(out, "wac exit %d: %s\n", code, meaning);
}

void print_reproduce_json(FILE* out, const Options& o, const std::vector<PolicyResult>& runs,
                          int exit_code) {
  JsonWriter j(out);
  j.begin_object()
      .field("mode", "reproduce")
      .field("duration_s", o.duration_s)
      .field("workers", o.scenario_workers)
      .field("file_size", o.file_size)
      .field("buffer_size", o.buffer_size)
      .field("seed", o.seed)
      .field("write_sync", sync_description(o.write_sync, false))
      .field("mmap_sync", sync_description(o.mmap_sync, true));
  if (!o.image.empty()) j.field("image", o.image);
  j.key("runs").begin_array();
  for (const auto& p : runs) {
    j.begin_object();
    if (p.policy.empty()) j.key("policy").null();
    else j.field("policy", p.policy);
    j.field("target", p.target).field("mount_options", p.mount_options);
    j.field("failure", p.failure);
    j.key("scenarios").begin_array();
    for (const auto& s : p.scenarios) {
      j.begin_object()
          .field("name", std::string(1, s.scenario.name))
          .field("description", s.scenario.what)
          .field("write_workers", s.scenario.writers)
          .field("mmap_workers", s.scenario.mmappers)
          .field("o_direct", s.scenario.o_direct)
          .field("ops", s.run.ops())
          .field("ops_per_s", per_s(s.run.ops(), s.run.elapsed_s))
          .field("integrity_errors", s.integrity.errors());
      if (s.integrity.have_counters) j.field("writeback_waits", s.integrity.delta.writeback_waits);
      else j.key("writeback_waits").null();
      j.field("sync_eio", sync_eio(s.run))
          .field("final_fsync_errno", s.final_fsync_errno)
          .field("failure", s.failure);
      json_run(j, s.run);
      json_integrity(j, s.integrity);
      j.end_object();
    }
    j.end_array();
    j.field("integrity_errors", p.integrity_errors());
    j.key("scrub")
        .begin_object()
        .field("ran", p.scrub.ran)
        .field("exit_code", p.scrub.exit_code)
        .field("clean", p.scrub.clean())
        .end_object();
    j.key("daemon_integrity_lines").begin_array();
    for (size_t i = 0; i < p.daemon_lines.size() && i < 20; i++) j.value(p.daemon_lines[i]);
    j.end_array();
    j.field("verdict", p.verdict());
    j.end_object();
  }
  j.end_array();
  j.field("exit_code", exit_code);
  j.end_object();
  j.newline();
}

}  // namespace stablefs::wac
