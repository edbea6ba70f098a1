// stablefs-stat: prints a mount's live counters from its shared-memory
// segment, once or every second.
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <thread>

#include "core/stats/live_counters.h"
#include "core/io/open_device.h"
#include "fs/mount_identity.h"
#include "tools/fs_identity.h"
#include "tools/superblock_copies.h"
#include "tools/json_writer.h"
#include "tools/version.h"

namespace {

void usage(FILE* f) {
  std::fprintf(f,
               "usage: stablefs-stat [-w] [--json | --prometheus] MOUNTPOINT\n"
               "Prints the live counters of a mounted stablefs (read from its shared-memory\n"
               "segment) and the label and UUID of its source: integrity errors, writeback\n"
               "waits, shadow/bounce copies, dirty and under-writeback pages, bytes, journal\n"
               "commits, and the FUSE requests answered by opcode (count, average and maximum\n"
               "time from the daemon's callback to its reply; the text table lists opcodes\n"
               "seen at least once, --json all of them).\n"
               "  -w, --watch   print again every second until interrupted; the text adds\n"
               "                per-second rates of the totals\n"
               "  --json        one JSON object per print\n"
               "  --prometheus  the OpenMetrics text format (node_exporter's textfile\n"
               "                collector), labelled by mountpoint and source\n"
               "  -h, --help    this text\n"
               "  -V, --version version of stablefs-stat and of its libraries\n"
               "Exit: 0 ok, 1 no stablefs counters at MOUNTPOINT, 2 usage.\n");
}

// How a counter reads: a running total (rates make sense), a gauge, or a
// total/gauge in nanoseconds or bytes (shown in human units).
enum class Kind { kTotal, kGauge, kBytes, kNanos, kNanosGauge };

struct Snapshot {
  const char* name;
  uint64_t value;
  Kind kind;
  const char* help;
};

bool is_total(Kind k) { return k == Kind::kTotal || k == Kind::kBytes || k == Kind::kNanos; }

std::string human(double v, Kind k) {
  char b[64];
  if (k == Kind::kBytes) {
    const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024 && u < 4) v /= 1024, u++;
    std::snprintf(b, sizeof b, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
  } else if (k == Kind::kNanos || k == Kind::kNanosGauge) {
    if (v >= 1e9) std::snprintf(b, sizeof b, "%.2f s", v / 1e9);
    else if (v >= 1e6) std::snprintf(b, sizeof b, "%.2f ms", v / 1e6);
    else std::snprintf(b, sizeof b, "%.1f us", v / 1e3);
  } else {
    std::snprintf(b, sizeof b, "%.0f", v);
  }
  return b;
}

// Label values in the OpenMetrics text format: backslash, quote and
// newline escaped.
std::string label_value(const char* s) {
  std::string out;
  for (; *s; s++) {
    if (*s == '\\' || *s == '"') out += '\\';
    if (*s == '\n') {
      out += "\\n";
      continue;
    }
    out += *s;
  }
  return out;
}

// The filesystem's label and UUID, read once from its source's superblock
// (they never change while it is mounted); nullopt with `why` when the
// source cannot be read (another user's image, a vanished device).
struct Identity {
  std::optional<stablefs::Superblock> sb;
  std::string why;
};

Identity read_identity(const char* source) {
  Identity id;
  // Reading an NBD export's superblock takes a second connection, which a
  // single-client server (the exclusivity setting README asks for) refuses
  // or holds for the daemon's lifetime.
  if (stablefs::is_nbd_uri(source)) {
    id.why = std::string(source) + ": not read while mounted (an NBD export admits one client)";
    return id;
  }
  auto sb = stablefs::read_superblock(source, &id.why);
  if (sb.ok()) id.sb = std::move(*sb);
  return id;
}

void print_stat_json(const char* name, const stablefs::RequestStat& r) {
  std::printf("\"%s\":{\"count\":%llu,\"total_ns\":%llu,\"max_ns\":%llu}", name,
              (unsigned long long)r.count.load(), (unsigned long long)r.total_ns.load(),
              (unsigned long long)r.max_ns.load());
}

// "ops":{"LOOKUP":{...},...},"getxattr_security_capability":{...}
void print_requests_json(const stablefs::RequestCounters& rc) {
  std::printf(",\"ops\":{");
  for (size_t i = 0; i < stablefs::kRequestOpCount; i++) {
    if (i) std::printf(",");
    print_stat_json(stablefs::kRequestOpNames[i].data(), rc.ops[i]);
  }
  std::printf("},");
  print_stat_json("getxattr_security_capability", rc.getxattr_security_capability);
}

void print_stat_row(const char* name, const stablefs::RequestStat& r) {
  uint64_t n = r.count.load(), total = r.total_ns.load(), max = r.max_ns.load();
  std::printf("  %-32s %12llu %12.1f %12.1f\n", name, (unsigned long long)n,
              n ? double(total) / double(n) / 1000.0 : 0.0, double(max) / 1000.0);
}

void print_requests_text(const stablefs::RequestCounters& rc) {
  std::printf("  %-32s %12s %12s %12s\n", "request", "count", "avg us", "max us");
  for (size_t i = 0; i < stablefs::kRequestOpCount; i++)
    if (rc.ops[i].count.load() > 0) print_stat_row(stablefs::kRequestOpNames[i].data(), rc.ops[i]);
  if (rc.getxattr_security_capability.count.load() > 0)
    print_stat_row("  of which security.capability", rc.getxattr_security_capability);
}

constexpr size_t kCounterCount = 33;
using Snapshots = std::array<Snapshot, kCounterCount>;

Snapshots snapshot(const stablefs::LiveCounters& c) {
  using K = Kind;
  return {{
      {"integrity_errors_write", c.integrity_errors_write, K::kTotal,
       "blocks whose read-back after a write did not match their checksum (verify_writes)"},
      {"integrity_errors_read", c.integrity_errors_read, K::kTotal,
       "blocks read from the backing store that did not match their checksum"},
      {"writeback_waits", c.writeback_waits, K::kTotal,
       "writers that waited for a page under writeback"},
      {"writeback_wait_ns_total", c.writeback_wait_ns_total, K::kNanos,
       "time writers spent waiting for pages under writeback"},
      {"writeback_wait_ns_max", c.writeback_wait_ns_max, K::kNanosGauge,
       "longest single wait for a page under writeback"},
      {"shadow_copies", c.shadow_copies, K::kTotal, "shadow pages taken (stable_pages=shadow)"},
      {"bounce_copies", c.bounce_copies, K::kTotal, "bounce copies made (stable_pages=bounce)"},
      {"shadow_pool_fallbacks", c.shadow_pool_fallbacks, K::kTotal,
       "shadow copies refused for want of a frame (the writer waited instead)"},
      {"pages_under_writeback", c.pages_under_writeback, K::kGauge, "pages under writeback now"},
      {"dirty_pages", c.dirty_pages, K::kGauge, "dirty pages in the daemon's cache now"},
      {"cached_inodes", c.cached_inodes, K::kGauge, "inodes cached by the daemon now"},
      {"cached_metadata_blocks", c.cached_metadata_blocks, K::kGauge,
       "metadata blocks cached by the daemon now"},
      {"metadata_evictions", c.metadata_evictions, K::kTotal,
       "metadata blocks evicted from the daemon's cache"},
      {"bytes_written", c.bytes_written, K::kBytes, "bytes written by applications"},
      {"bytes_read", c.bytes_read, K::kBytes, "bytes read from the backing store"},
      {"blocks_written", c.blocks_written, K::kTotal, "data blocks written back"},
      {"journal_commits", c.journal_commits, K::kTotal, "journal transactions committed"},
      {"shadow_metadata_copies", c.shadow_metadata_copies, K::kTotal,
       "metadata blocks copied because the committing transaction was writing them"},
      {"journaled_data_blocks", c.journaled_data_blocks, K::kTotal,
       "rewritten data blocks written back through the journal (journal_data=)"},
      {"journal_deltas", c.journal_deltas, K::kTotal,
       "metadata blocks logged as the bytes that changed (journal_deltas=)"},
      {"device_read_errors", c.device_read_errors, K::kTotal,
       "reads the backing store failed, data or metadata (after its retries)"},
      {"device_write_errors", c.device_write_errors, K::kTotal,
       "writes, flushes and discards the backing store failed (after its retries)"},
      {"device_retries", c.device_retries, K::kTotal,
       "requests resubmitted after a transient failure (EAGAIN, EINTR, short transfer)"},
      {"device_flushes", c.device_flushes, K::kTotal,
       "cache flushes sent to the backing store (commits, checkpoints, superblock writes)"},
      {"device_flush_ns_total", c.device_flush_ns_total, K::kNanos,
       "time the backing store took for those flushes"},
      {"journal_commit_ns_total", c.journal_commit_ns_total, K::kNanos,
       "time commits took, from their start to a durable commit block (flushes included)"},
      {"journal_commit_ns_max", c.journal_commit_ns_max, K::kNanosGauge,
       "longest single commit"},
      {"journal_checkpoints", c.journal_checkpoints, K::kTotal,
       "checkpoints: logged blocks written home so the log space can be reused"},
      {"journal_checkpoint_ns_total", c.journal_checkpoint_ns_total, K::kNanos,
       "time checkpoints took (home writes, flush, new log tail)"},
      {"replayed_transactions", c.replayed_transactions, K::kTotal,
       "journal transactions replayed at mount"},
      {"journal_aborted", c.journal_aborted, K::kGauge,
       "0, or the errno that aborted the journal and made the filesystem read-only"},
      {"read_only", c.read_only, K::kGauge, "1 while the daemon refuses every change"},
      {"metadata_errors", c.metadata_errors, K::kTotal,
       "requests failed by a metadata block that failed verification (errors= acts on the first)"},
  }};
}

// One OpenMetrics exposition: a family per counter, labelled by mountpoint
// and source; totals are counters (_total), times in seconds.
// One OpenMetrics family with a sample per FUSE opcode.
struct RequestFamily {
  const char* name;
  bool counter;  // else a gauge
  const char* help;
  std::string (*sample)(const stablefs::RequestStat&);  // the value as printed
};

std::string seconds(uint64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9f", double(ns) / 1e9);
  return buf;
}

void print_request_family(const RequestFamily& f, const stablefs::RequestCounters& rc,
                          const std::string& labels) {
  std::printf("# TYPE %s %s\n# HELP %s %s\n", f.name, f.counter ? "counter" : "gauge", f.name,
              f.help);
  for (size_t i = 0; i < stablefs::kRequestOpCount; i++)
    std::printf("%s%s{%s,op=\"%s\"} %s\n", f.name, f.counter ? "_total" : "", labels.c_str(),
                stablefs::kRequestOpNames[i].data(), f.sample(rc.ops[i]).c_str());
}

void print_prometheus(const stablefs::LiveCounters& c) {
  std::string labels = "mountpoint=\"" + label_value(c.mountpoint) + "\",source=\"" +
                       label_value(c.source) + "\"";
  for (const Snapshot& e : snapshot(c)) {
    std::string name = std::string("stablefs_") + e.name;
    double v = double(e.value);
    if (e.kind == Kind::kNanos || e.kind == Kind::kNanosGauge) {
      name = name.substr(0, name.find("_ns")) + "_seconds" + name.substr(name.find("_ns") + 3);
      v /= 1e9;
    }
    if (name.size() > 6 && name.compare(name.size() - 6, 6, "_total") == 0)
      name.resize(name.size() - 6);  // the family; its sample adds _total
    bool counter = is_total(e.kind);
    std::printf("# TYPE %s %s\n# HELP %s %s\n%s%s{%s} ", name.c_str(),
                counter ? "counter" : "gauge", name.c_str(), e.help, name.c_str(),
                counter ? "_total" : "", labels.c_str());
    if (e.kind == Kind::kNanos || e.kind == Kind::kNanosGauge) std::printf("%.9f\n", v);
    else std::printf("%llu\n", (unsigned long long)e.value);
  }
  print_request_family({"stablefs_requests", true, "FUSE requests answered, by opcode",
                        [](const stablefs::RequestStat& r) {
                          return std::to_string(r.count.load());
                        }},
                       c.requests, labels);
  print_request_family({"stablefs_request_seconds", true,
                        "time from the daemon's callback to its reply, summed by opcode",
                        [](const stablefs::RequestStat& r) { return seconds(r.total_ns.load()); }},
                       c.requests, labels);
  print_request_family({"stablefs_request_max_seconds", false, "longest request, by opcode",
                        [](const stablefs::RequestStat& r) { return seconds(r.max_ns.load()); }},
                       c.requests, labels);
  std::printf("# EOF\n");
  std::fflush(stdout);
}

// `prev` (the last print's values, one second earlier) turns totals into
// rates; null on the first print.
void print(const stablefs::LiveCounters& c, const Identity& id, bool json, const Snapshots* prev,
           double interval_s) {
  const Snapshots s = snapshot(c);
  const bool first = prev == nullptr;
  if (json) {
    std::printf("{\"mountpoint\":%s,\"source\":%s,\"pid\":%lld",
                stablefs::json_quoted(c.mountpoint).c_str(),
                stablefs::json_quoted(c.source).c_str(), (long long)c.pid);
    if (id.sb)
      std::printf(",\"label\":%s,\"uuid\":\"%s\"", stablefs::json_quoted(id.sb->label).c_str(),
                  stablefs::format_uuid(id.sb->uuid).c_str());
    else
      std::printf(",\"label\":null,\"uuid\":null");
    for (auto& e : s) std::printf(",\"%s\":%llu", e.name, (unsigned long long)e.value);
    print_requests_json(c.requests);
    std::printf("}\n");
  } else {
    if (!first) std::printf("\n");
    std::printf("%s on %s (pid %lld)\n", c.source, c.mountpoint, (long long)c.pid);
    if (id.sb)
      std::printf("  label \"%s\", uuid %s\n", id.sb->label.c_str(),
                  stablefs::format_uuid(id.sb->uuid).c_str());
    else
      std::printf("  label and uuid unknown: %s\n", id.why.c_str());
    for (size_t i = 0; i < s.size(); i++) {
      const Snapshot& e = s[i];
      std::printf("  %-24s %llu", e.name, (unsigned long long)e.value);
      if (e.kind != Kind::kTotal && e.kind != Kind::kGauge)
        std::printf("  (%s)", human(double(e.value), e.kind).c_str());
      if (prev && is_total(e.kind) && interval_s > 0) {
        double rate = double(e.value - std::min(e.value, (*prev)[i].value)) / interval_s;
        std::printf("  %s/s", human(rate, e.kind).c_str());
      }
      std::printf("\n");
    }
    print_requests_text(c.requests);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  bool watch = false, json = false, prometheus = false;
  static const option longopts[] = {{"watch", no_argument, nullptr, 'w'},
                                    {"json", no_argument, nullptr, 'j'},
                                    {"prometheus", no_argument, nullptr, 'p'},
                                    {"help", no_argument, nullptr, 'h'},
                                    {"version", no_argument, nullptr, 'V'},
                                    {nullptr, 0, nullptr, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "whV", longopts, nullptr)) != -1) {
    switch (ch) {
      case 'w': watch = true; break;
      case 'j': json = true; break;
      case 'p': prometheus = true; break;
      case 'h': usage(stdout); return 0;
      case 'V': stablefs::print_version(stdout, "stablefs-stat",
                                       {stablefs::boost_version(), stablefs::xxhash_version()});
        return 0;
      default: usage(stderr); return 2;
    }
  }
  if (optind + 1 != argc || (json && prometheus)) {
    usage(stderr);
    return 2;
  }
  char buf[PATH_MAX];
  if (!realpath(argv[optind], buf)) {
    std::fprintf(stderr, "stablefs-stat: %s: %s\n", argv[optind], std::strerror(errno));
    return 1;
  }
  std::string why;
  auto view = stablefs::CountersView::open(buf, &why);
  // A second mount that shares a daemon reads the counters of the mount
  // the daemon was started on.
  if (!view.ok() && view.error() == ENOENT)
    if (std::string first = stablefs::counters_mountpoint_for(buf); first != buf)
      view = stablefs::CountersView::open(first, &why);
  if (!view.ok()) {
    std::fprintf(stderr, "stablefs-stat: %s\n", why.c_str());
    return 1;
  }
  const Identity id = read_identity((*view)->counters().source);
  std::optional<Snapshots> prev;
  auto last = std::chrono::steady_clock::now();
  for (;;) {
    const stablefs::LiveCounters& c = (*view)->counters();
    auto now = std::chrono::steady_clock::now();
    if (prometheus) {
      print_prometheus(c);
    } else {
      print(c, id, json, prev ? &*prev : nullptr,
            std::chrono::duration<double>(now - last).count());
    }
    if (!watch) return 0;
    prev = snapshot(c);
    last = now;
    std::this_thread::sleep_for(std::chrono::seconds(1));  // the display interval
  }
}
