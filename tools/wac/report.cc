#include "tools/wac/report.h"

#include <cinttypes>
#include <cstring>

namespace stablefs::wac {

std::string human_ns(uint64_t ns) {
  char buf[32];
  if (ns < 1000) std::snprintf(buf, sizeof buf, "%" PRIu64 " ns", ns);
  else if (ns < 1000'000) std::snprintf(buf, sizeof buf, "%.1f us", ns / 1e3);
  else if (ns < 1000'000'000) std::snprintf(buf, sizeof buf, "%.2f ms", ns / 1e6);
  else std::snprintf(buf, sizeof buf, "%.2f s", ns / 1e9);
  return buf;
}

std::string errno_name(int errnum) {
  if (errnum >= kMaxErrno) return "E?";
  const char* n = strerrorname_np(errnum);
  return n ? n : "E" + std::to_string(errnum);
}

std::string sync_description(const SyncSteps& s, bool mmap) {
  std::string out;
  if (s.range) out = mmap ? "msync" : "sync_file_range";
  if (s.fsync) out += out.empty() ? "fsync" : "+fsync";
  return out.empty() ? "no sync" : out;
}

namespace {

double per_s(uint64_t n, double s) { return s > 0 ? double(n) / s : 0; }

void text_kind(FILE* out, const char* name, const KindTotals& k, double elapsed) {
  std::fprintf(out, "  %-6s %7u %11" PRIu64 " %10.1f %9.2f %10s %10s %10s\n", name, k.workers,
               k.ops, per_s(k.ops, elapsed), per_s(k.bytes, elapsed) / (1 << 20),
               human_ns(k.latency.quantile(0.5)).c_str(),
               human_ns(k.latency.quantile(0.99)).c_str(), human_ns(k.latency.max()).c_str());
}

void json_kind(JsonWriter& j, const KindTotals& k, double elapsed) {
  j.begin_object()
      .field("workers", k.workers)
      .field("ops", k.ops)
      .field("failed_ops", k.failed_ops)
      .field("ops_per_s", per_s(k.ops, elapsed))
      .field("bytes", k.bytes);
  j.key("latency_ns")
      .begin_object()
      .field("count", k.latency.count())
      .field("p50", k.latency.quantile(0.5))
      .field("p99", k.latency.quantile(0.99))
      .field("max", k.latency.max())
      .end_object();
  j.end_object();
}

}  // namespace

void json_run(JsonWriter& j, const RunResult& run) {
  j.field("elapsed_s", run.elapsed_s).field("interrupted", run.interrupted);
  j.field("failed_workers", run.failed_workers);
  j.key("workers").begin_object();
  j.key("write");
  json_kind(j, run.write, run.elapsed_s);
  j.key("mmap");
  json_kind(j, run.mmap, run.elapsed_s);
  j.end_object();
  j.key("total")
      .begin_object()
      .field("workers", run.write.workers + run.mmap.workers)
      .field("ops", run.ops())
      .field("failed_ops", run.write.failed_ops + run.mmap.failed_ops)
      .field("ops_per_s", per_s(run.ops(), run.elapsed_s))
      .field("bytes", run.write.bytes + run.mmap.bytes)
      .end_object();
  j.key("latency_ns")
      .begin_object()
      .field("count", run.latency.count())
      .field("p50", run.latency.quantile(0.5))
      .field("p99", run.latency.quantile(0.99))
      .field("max", run.latency.max())
      .end_object();
  j.key("errors").begin_array();
  for (const auto& e : run.errors)
    j.begin_object()
        .field("step", step_name(e.step))
        .field("errno", e.errnum)
        .field("name", errno_name(e.errnum))
        .field("count", e.count)
        .end_object();
  j.end_array();
}

void json_integrity(JsonWriter& j, const IntegrityObservation& obs) {
  j.key("integrity").begin_object();
  j.field("source", obs.have_counters ? "stablefs-counters"
                    : obs.have_kernel_log ? "kernel-log" : "none");
  j.field("errors", obs.errors());
  if (obs.have_counters) {
    const IntegritySnapshot& d = obs.delta;
    j.field("mountpoint", obs.mountpoint)
        .field("errors_write_verify", d.errors_write)
        .field("errors_read_verify", d.errors_read)
        .field("writeback_waits", d.writeback_waits)
        .field("writeback_wait_ns_total", d.wait_ns_total)
        .field("writeback_wait_ns_max", d.wait_ns_max)
        .field("shadow_copies", d.shadow_copies)
        .field("bounce_copies", d.bounce_copies)
        .field("shadow_pool_fallbacks", d.pool_fallbacks)
        .field("blocks_written", d.blocks_written);
  } else {
    j.field("note", obs.counters_note);
  }
  if (!obs.have_kernel_log) j.field("kernel_log_note", obs.kernel_log_note);
  j.key("kernel_lines").begin_array();
  for (const auto& l : obs.kernel_lines) j.value(l);
  j.end_array();
  j.end_object();
}

void print_stress_text(FILE* out, const StressReport& r) {
  const Options& o = *r.options;
  const RunResult& run = r.run;
  std::fprintf(out, "wac stress on %s: %u write + %u mmap workers, %.1f s%s, %s%s, -b %" PRIu64
               " -l %" PRIu64 ", seed %" PRIu64 "\n",
               r.file.c_str(), o.write_workers, o.mmap_workers, run.elapsed_s,
               run.interrupted ? " (interrupted)" : "", o.o_direct ? "O_DIRECT" : "buffered",
               o.o_sync ? "+O_SYNC" : "", o.buffer_size, o.file_size, o.seed);
  std::fprintf(out, "  sync after each write: write workers %s, mmap workers %s\n",
               sync_description(o.write_sync, false).c_str(),
               sync_description(o.mmap_sync, true).c_str());
  std::fprintf(out, "  %-6s %7s %11s %10s %9s %10s %10s %10s\n", "kind", "workers", "ops", "ops/s",
               "MiB/s", "p50", "p99", "max");
  if (run.write.workers) text_kind(out, "write", run.write, run.elapsed_s);
  if (run.mmap.workers) text_kind(out, "mmap", run.mmap, run.elapsed_s);
  KindTotals total;
  total.workers = run.write.workers + run.mmap.workers;
  total.ops = run.ops();
  total.bytes = run.write.bytes + run.mmap.bytes;
  total.latency = run.latency;
  text_kind(out, "total", total, run.elapsed_s);
  if (run.failed_workers) std::fprintf(out, "  %u workers failed\n", run.failed_workers);
  if (run.errors.empty()) {
    std::fprintf(out, "  errors by errno: none\n");
  } else {
    std::fprintf(out, "  errors by errno:\n");
    for (const auto& e : run.errors)
      std::fprintf(out, "    %-16s %-8s %" PRIu64 "\n", step_name(e.step),
                   errno_name(e.errnum).c_str(), e.count);
  }
  const IntegrityObservation& obs = r.integrity;
  if (obs.have_counters) {
    const IntegritySnapshot& d = obs.delta;
    std::fprintf(out,
                 "  integrity (stablefs counters of %s): %" PRIu64 " write-verify + %" PRIu64
                 " read-verify errors\n"
                 "  writeback waits %" PRIu64 " (total %s, max %s), shadow copies %" PRIu64
                 ", bounce copies %" PRIu64 ", pool fallbacks %" PRIu64 "\n",
                 obs.mountpoint.c_str(), d.errors_write, d.errors_read, d.writeback_waits,
                 human_ns(d.wait_ns_total).c_str(), human_ns(d.wait_ns_max).c_str(),
                 d.shadow_copies, d.bounce_copies, d.pool_fallbacks);
  } else {
    std::fprintf(out, "  %s\n", obs.counters_note.c_str());
    if (obs.have_kernel_log)
      std::fprintf(out, "  kernel log: %zu integrity-looking lines during the run\n",
                   obs.kernel_lines.size());
    else
      std::fprintf(out, "  %s\n", obs.kernel_log_note.c_str());
    for (const auto& l : obs.kernel_lines) std::fprintf(out, "    %s\n", l.c_str());
  }
}

void print_stress_json(FILE* out, const StressReport& r) {
  const Options& o = *r.options;
  JsonWriter j(out);
  j.begin_object()
      .field("mode", "stress")
      .field("file", r.file)
      .field("duration_s", o.duration_s)
      .field("seed", o.seed)
      .field("o_direct", o.o_direct)
      .field("o_sync", o.o_sync)
      .field("buffer_size", o.buffer_size)
      .field("file_size", o.file_size)
      .field("write_sync", sync_description(o.write_sync, false))
      .field("mmap_sync", sync_description(o.mmap_sync, true));
  json_run(j, r.run);
  json_integrity(j, r.integrity);
  j.end_object();
  j.newline();
}

}  // namespace stablefs::wac
