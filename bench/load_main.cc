// sfs-bench-load: the load generator behind bench/run. One workload per
// invocation; prints one "VALUE UNIT [NAME]" line per figure on stdout and
// the counts behind them on stderr. Exit 0 ok, 1 workload failed, 2 usage.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "bench/workloads.h"

namespace {

using namespace stablefs::bench;

void usage(FILE* f) {
  std::fprintf(f,
      "usage: sfs-bench-load seqwrite FILE MIB [BLOCK_KIB]\n"
      "       sfs-bench-load seqread FILE [BLOCK_KIB]\n"
      "       sfs-bench-load creates DIR FILES THREADS\n"
      "       sfs-bench-load files DIR FILES      (create, stat, unlink: three figures)\n"
      "       sfs-bench-load rewriters DIR PROCS FILE_KIB SECONDS own|shared\n"
      "       sfs-bench-load commit DIR THREADS SECONDS\n");
}

[[noreturn]] void usage_error() {
  usage(stderr);
  std::exit(2);
}

unsigned long long num(const char* s) {
  char* end = nullptr;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (!*s || *end) usage_error();
  return v;
}

double seconds(const char* s) {
  char* end = nullptr;
  double v = std::strtod(s, &end);
  if (!*s || *end || v <= 0) usage_error();
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage_error();
  std::string mode = argv[1];
  if (mode == "-h" || mode == "--help") {
    usage(stdout);
    return 0;
  }
  Outcome o;
  if (mode == "seqwrite" && (argc == 4 || argc == 5)) {
    uint64_t block = (argc == 5 ? num(argv[4]) : 1024) << 10;
    o = seq_write(argv[2], num(argv[3]) << 20, block);
  } else if (mode == "seqread" && (argc == 3 || argc == 4)) {
    o = seq_read(argv[2], (argc == 4 ? num(argv[3]) : 1024) << 10);
  } else if (mode == "creates" && argc == 5) {
    o = creates(argv[2], unsigned(num(argv[3])), unsigned(num(argv[4])));
  } else if (mode == "files" && argc == 4) {
    o = create_stat_unlink(argv[2], unsigned(num(argv[3])));
  } else if (mode == "rewriters" && argc == 7) {
    std::string kind = argv[6];
    if (kind != "own" && kind != "shared") usage_error();
    o = rewriters(argv[2], unsigned(num(argv[3])), num(argv[4]) << 10, seconds(argv[5]),
                  kind == "shared");
  } else if (mode == "commit" && argc == 5) {
    o = commit_loop(argv[2], unsigned(num(argv[3])), seconds(argv[4]));
  } else {
    usage_error();
  }
  if (o.error) {
    std::fprintf(stderr, "sfs-bench-load %s: %s: %s\n", mode.c_str(), o.what.c_str(),
                 std::strerror(o.error));
    return 1;
  }
  std::fprintf(stderr, "sfs-bench-load %s: %s\n", mode.c_str(), o.figure.detail.c_str());
  // One line per figure: "VALUE UNIT", or "VALUE UNIT NAME" when a
  // workload yields several (bench/run turns NAME into the row's name).
  std::printf("%.1f %s%s%s\n", o.figure.value, o.figure.unit.c_str(),
              o.figure.name.empty() ? "" : " ", o.figure.name.c_str());
  for (const Figure& f : o.more)
    std::printf("%.1f %s %s\n", f.value, f.unit.c_str(), f.name.c_str());
  return 0;
}
