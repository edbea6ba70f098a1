// stablefs-stat: prints a mount's live counters from its shared-memory
// segment, once or every second.
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <thread>

#include "core/stats/live_counters.h"
#include "tools/fs_identity.h"
#include "tools/superblock_copies.h"
#include "tools/json_writer.h"
#include "tools/version.h"

namespace {

void usage(FILE* f) {
  std::fprintf(f,
               "usage: stablefs-stat [-w] [--json] MOUNTPOINT\n"
               "Prints the live counters of a mounted stablefs (read from its shared-memory\n"
               "segment) and the label and UUID of its source: integrity errors, writeback\n"
               "waits, shadow/bounce copies, dirty and under-writeback pages, bytes, journal\n"
               "commits, and the FUSE requests answered by opcode (count, average and maximum\n"
               "time from the daemon's callback to its reply; the text table lists opcodes\n"
               "seen at least once, --json all of them).\n"
               "  -w, --watch   print again every second until interrupted\n"
               "  --json        one JSON object per print\n"
               "  -h, --help    this text\n"
               "  -V, --version version of stablefs-stat and of its libraries\n"
               "Exit: 0 ok, 1 no stablefs counters at MOUNTPOINT, 2 usage.\n");
}

struct Snapshot {
  const char* name;
  uint64_t value;
};

// The filesystem's label and UUID, read once from its source's superblock
// (they never change while it is mounted); nullopt with `why` when the
// source cannot be read (another user's image, a vanished device).
struct Identity {
  std::optional<stablefs::Superblock> sb;
  std::string why;
};

Identity read_identity(const char* source) {
  Identity id;
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

void print(const stablefs::LiveCounters& c, const Identity& id, bool json, bool first) {
  Snapshot s[] = {
      {"integrity_errors_write", c.integrity_errors_write},
      {"integrity_errors_read", c.integrity_errors_read},
      {"writeback_waits", c.writeback_waits},
      {"writeback_wait_ns_total", c.writeback_wait_ns_total},
      {"writeback_wait_ns_max", c.writeback_wait_ns_max},
      {"shadow_copies", c.shadow_copies},
      {"bounce_copies", c.bounce_copies},
      {"shadow_pool_fallbacks", c.shadow_pool_fallbacks},
      {"pages_under_writeback", c.pages_under_writeback},
      {"dirty_pages", c.dirty_pages},
      {"cached_inodes", c.cached_inodes},
      {"cached_metadata_blocks", c.cached_metadata_blocks},
      {"metadata_evictions", c.metadata_evictions},
      {"bytes_written", c.bytes_written},
      {"bytes_read", c.bytes_read},
      {"blocks_written", c.blocks_written},
      {"journal_commits", c.journal_commits},
      {"shadow_metadata_copies", c.shadow_metadata_copies},
      {"replayed_transactions", c.replayed_transactions},
      {"journal_aborted", c.journal_aborted},
      {"read_only", c.read_only},
  };
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
    for (auto& e : s) std::printf("  %-24s %llu\n", e.name, (unsigned long long)e.value);
    print_requests_text(c.requests);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  bool watch = false, json = false;
  static const option longopts[] = {{"watch", no_argument, nullptr, 'w'},
                                    {"json", no_argument, nullptr, 'j'},
                                    {"help", no_argument, nullptr, 'h'},
                                    {"version", no_argument, nullptr, 'V'},
                                    {nullptr, 0, nullptr, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "whV", longopts, nullptr)) != -1) {
    switch (ch) {
      case 'w': watch = true; break;
      case 'j': json = true; break;
      case 'h': usage(stdout); return 0;
      case 'V': stablefs::print_version(stdout, "stablefs-stat",
                                       {stablefs::boost_version(), stablefs::xxhash_version()});
        return 0;
      default: usage(stderr); return 2;
    }
  }
  if (optind + 1 != argc) {
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
  if (!view.ok()) {
    std::fprintf(stderr, "stablefs-stat: %s\n", why.c_str());
    return 1;
  }
  const Identity id = read_identity((*view)->counters().source);
  for (bool first = true;; first = false) {
    print((*view)->counters(), id, json, first);
    if (!watch) return 0;
    std::this_thread::sleep_for(std::chrono::seconds(1));  // the display interval
  }
}
