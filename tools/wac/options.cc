#include "tools/wac/options.h"

#include <getopt.h>
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "tools/version.h"

namespace stablefs::wac {

void print_help(FILE* out) {
  std::fprintf(out,
R"(usage: wac [OPTIONS] FILE|DIR                       stress mode (default)
       wac --reproduce [OPTIONS] DIR                 scenarios A-F on a mounted filesystem
       wac --reproduce --image IMAGE [OPTIONS]       A-F on scratch stablefs mounts, per policy

wac (write-after-checksum) rewrites the same pages of one file from many
processes, so a filesystem that checksums a page and then writes it while an
application changes it is caught. On stablefs the mount's live integrity
counters are the measure; elsewhere wac reports kernel log lines that look
like DIF/DIX guard or reference tag errors.

Stress mode runs -n write() workers and -m shared-mmap workers on FILE
(created or TRUNCATED; a DIR means DIR/wac.dat) for -t seconds and reports
ops/s per worker kind, p50/p99/max latency of the write+sync step, and
errors by errno. Every write carries a fresh pattern, so concurrent rewrites
really change the bytes under writeback.
  -n N          write() worker processes (default 1)
  -m N          mmap(MAP_SHARED) worker processes (default 0)
  -d            O_DIRECT (buffers aligned, sizes and offsets multiples of -b)
  -b SIZE       buffer size: largest write, in bytes (default 4096; K/M/G ok)
  -l SIZE       file size (default 64K)
  -s            open with O_SYNC
  -r            after each write: sync_file_range (write workers), msync
                MS_SYNC (mmap workers)
  -f            fsync after each write
  --write-sync=none|range|fsync|both   override -r/-f for write workers
  --mmap-sync=none|msync|fsync|both    override -r/-f for mmap workers
  -t SECONDS    duration (default 10; 3 per scenario with --reproduce)
  --seed N      seed of the offsets and patterns (default: random, reported)
  --json        print the report as one JSON object
SIGINT/SIGTERM stop the run early; the report is still printed.

Reproducer mode (--reproduce) runs the six scenarios of the 2011 stable-page
patch series, each on a fresh file in DIR, each for -t seconds:
  A  N write() workers + sync_file_range     D  C with O_DIRECT
  B  N mmap workers + msync                  E  A with O_DIRECT
  C  N/2 write() + N/2 mmap                  F  B with O_DIRECT
On stablefs it reads integrity errors (write-verify + read-verify) and
writeback waits from the mount's shared-memory counters before and after
each scenario, and prints scenario x (ops, ops/s, integrity errors, waits).
  --workers N       N above (default 64)
  --scenarios LIST  subset, e.g. AC (default ABCDEF)
  -l SIZE           file size (default 1M here: see the README)
  -b, -r, -f, --*-sync, --seed, --json  as in stress mode (default: -r)
Exit: 0 no integrity error seen, 1 the race was reproduced (integrity errors
or kernel integrity lines), 4 the run failed.

--image IMAGE makes it self-contained: for each policy it creates a scratch
stablefs in IMAGE (mkfs.stablefs --force), mounts it with the daemon
(-o stable_pages=POLICY,verify_writes,writeback_delay=0), runs the scenarios,
unmounts, runs fsck.stablefs --scrub, and prints one comparison.
writeback_delay=0 (write-behind) keeps hot pages under writeback, so every
policy meets the race as often as it can; -o writeback_delay=1000 gives the
daemon's default flusher instead.
  --policies LIST   default off,wait,shadow,bounce
  --image-size SIZE default 256M
  -o OPTS           extra mount options, after ours (e.g. cache_size=64M)
  --no-scrub        skip fsck.stablefs --scrub
  --force           overwrite an existing non-empty IMAGE
  --keep            keep IMAGE, daemon logs and the mountpoint directory
  --stablefs PATH, --mkfs PATH, --fsck PATH  the tools (default: next to wac,
                    then PATH)
Exit with --image: 0 = the demonstration worked: every protected policy
(wait, shadow, bounce) had 0 integrity errors and a clean scrub, and `off`
(if run) showed integrity errors; 1 = a protected policy had integrity
errors or a dirty scrub (a stable-page bug); 3 = protected policies clean
but `off` did not reproduce the race in the time given (try a longer -t);
4 = mkfs, mount, unmount or a worker failed. Each policy's own verdict
(1 = race reproduced, 0 = none) is printed in the table and the JSON.

-h, --help prints this text; -V, --version the version of wac and of its
libraries. Usage errors exit 2.

Examples:
  wac -n64 -m16 -f -r -t20 /mnt/sfs           issue-4 stress, buffered
  wac --reproduce -t3 /mnt/sfs                A-F on a mounted filesystem
  wac --reproduce --image /tmp/x.img -t3      the one-command demonstration
)");
}

namespace {

struct UsageError {
  std::string message;
};

// "4096", "64K", "1M", "0x1000": bytes, strictly parsed.
bool parse_size(const char* s, uint64_t* out) {
  if (!s || !*s || *s == '-') return false;
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(s, &end, 0);
  if (errno || end == s) return false;
  uint64_t mult = 1;
  if (*end) {
    switch (*end) {
      case 'k': case 'K': mult = 1ull << 10; break;
      case 'm': case 'M': mult = 1ull << 20; break;
      case 'g': case 'G': mult = 1ull << 30; break;
      default: return false;
    }
    if (end[1] != '\0') return false;
  }
  if (v > UINT64_MAX / mult) return false;
  *out = v * mult;
  return true;
}

bool parse_uint(const char* s, unsigned* out) {
  uint64_t v;
  if (!parse_size(s, &v) || v > 1'000'000) return false;
  *out = unsigned(v);
  return true;
}

bool parse_seconds(const char* s, double* out) {
  if (!s || !*s) return false;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s, &end);
  if (errno || *end || !(v > 0) || !std::isfinite(v) || v > 7 * 86400) return false;
  *out = v;
  return true;
}

bool parse_sync(std::string_view v, std::string_view range_word, SyncSteps* out) {
  if (v == "none") *out = {false, false};
  else if (v == range_word || v == "range") *out = {true, false};
  else if (v == "fsync") *out = {false, true};
  else if (v == "both") *out = {true, true};
  else return false;
  return true;
}

std::vector<std::string> split_commas(std::string_view s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string_view::npos) comma = s.size();
    if (comma > start) out.emplace_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string parent_of(const std::string& p) {
  auto slash = p.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return p.substr(0, slash);
}

enum LongOpt {
  kSeed = 256, kJson, kReproduce, kImage, kImageSize, kPolicies, kScenarios, kWorkers,
  kNoScrub, kScrub, kForce, kKeep, kWriteSync, kMmapSync, kStablefs, kMkfs, kFsck,
};

void validate_stress_target(Options& o) {
  struct stat st;
  if (::stat(o.target.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      o.target += "/wac.dat";
      if (::stat(o.target.c_str(), &st) != 0) return;
    }
    if (!S_ISREG(st.st_mode))
      throw UsageError{o.target + ": not a regular file or directory"};
    return;
  }
  if (errno != ENOENT) throw UsageError{o.target + ": " + std::strerror(errno)};
  if (!is_dir(parent_of(o.target)))
    throw UsageError{o.target + ": no such file or directory (its directory " +
                     parent_of(o.target) + " does not exist)"};
}

void validate_image(Options& o) {
  struct stat st;
  if (!is_dir(parent_of(o.image)))
    throw UsageError{"--image " + o.image + ": directory " + parent_of(o.image) +
                     " does not exist"};
  if (::stat(o.image.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode))
      throw UsageError{"--image " + o.image + ": exists and is not a regular file "
                       "(wac only makes scratch image files)"};
    if (st.st_size > 0 && !o.force)
      throw UsageError{"--image " + o.image + ": exists and is not empty; it would be "
                       "overwritten (pass --force)"};
  }
}

void validate(Options& o, bool duration_given, bool nm_given, bool file_size_given) {
  if (o.mode == Mode::kReproduce) {
    if (!duration_given) o.duration_s = 3;
    // On FUSE the kernel serializes write() and fsync() per inode, so the
    // race needs a WRITE to land during the daemon's own background
    // writeback of the file; a 1 MiB file makes that window 16x wider than
    // the 2011 default of 64K (see the README).
    if (!file_size_given) o.file_size = 1 << 20;
  }
  if (o.buffer_size == 0) throw UsageError{"-b: the buffer size must be > 0"};
  if (o.file_size < o.buffer_size)
    throw UsageError{"-l " + std::to_string(o.file_size) + " is smaller than the buffer (-b " +
                     std::to_string(o.buffer_size) + "): the file must hold at least one buffer"};
  if (o.mode == Mode::kStress) {
    if (o.write_workers + o.mmap_workers == 0)
      throw UsageError{"zero workers: give -n and/or -m a count > 0"};
    if (o.o_direct && (o.buffer_size % 512 != 0 || o.file_size % 512 != 0))
      throw UsageError{"-d (O_DIRECT) needs -b and -l to be multiples of 512 bytes (got -b " +
                       std::to_string(o.buffer_size) + ", -l " + std::to_string(o.file_size) +
                       ")"};
    if (!o.image.empty()) throw UsageError{"--image needs --reproduce"};
    validate_stress_target(o);
    return;
  }
  // Reproducer: D-F run with O_DIRECT, so the sizes must suit it too.
  if (o.buffer_size % 512 != 0 || o.file_size % 512 != 0)
    throw UsageError{"--reproduce runs O_DIRECT scenarios: -b and -l must be multiples of 512"};
  if (nm_given) throw UsageError{"--reproduce sets -n/-m per scenario; use --workers N"};
  if (o.scenario_workers < 2) throw UsageError{"--workers must be >= 2 (C and D split it)"};
  if (o.scenarios.empty()) throw UsageError{"--scenarios: empty list"};
  for (char& c : o.scenarios) {
    c = char(std::toupper((unsigned char)c));
    if (c < 'A' || c > 'F') throw UsageError{"--scenarios: only letters A-F"};
  }
  if (o.image.empty()) {
    if (o.target.empty()) throw UsageError{"--reproduce needs a directory or --image IMAGE"};
    if (!is_dir(o.target)) throw UsageError{o.target + ": no such directory"};
    return;
  }
  if (!o.target.empty()) throw UsageError{"--image and a directory are exclusive"};
  if (o.policies.empty()) throw UsageError{"--policies: empty list"};
  for (auto& p : o.policies)
    if (p != "off" && p != "wait" && p != "shadow" && p != "bounce")
      throw UsageError{"--policies: unknown policy '" + p + "' (off, wait, shadow, bounce)"};
  uint64_t isz;
  if (!parse_size(o.image_size.c_str(), &isz) || isz < (16ull << 20))
    throw UsageError{"--image-size: need a size of at least 16M"};
  validate_image(o);
}

void parse_or_throw(int argc, char** argv, Options& o, bool* help, bool* version) {
  static const option longopts[] = {
      {"help", no_argument, nullptr, 'h'},
      {"version", no_argument, nullptr, 'V'},
      {"duration", required_argument, nullptr, 't'},
      {"seed", required_argument, nullptr, kSeed},
      {"json", no_argument, nullptr, kJson},
      {"reproduce", no_argument, nullptr, kReproduce},
      {"image", required_argument, nullptr, kImage},
      {"image-size", required_argument, nullptr, kImageSize},
      {"policies", required_argument, nullptr, kPolicies},
      {"scenarios", required_argument, nullptr, kScenarios},
      {"workers", required_argument, nullptr, kWorkers},
      {"mount-options", required_argument, nullptr, 'o'},
      {"no-scrub", no_argument, nullptr, kNoScrub},
      {"scrub", no_argument, nullptr, kScrub},
      {"force", no_argument, nullptr, kForce},
      {"keep", no_argument, nullptr, kKeep},
      {"write-sync", required_argument, nullptr, kWriteSync},
      {"mmap-sync", required_argument, nullptr, kMmapSync},
      {"stablefs", required_argument, nullptr, kStablefs},
      {"mkfs", required_argument, nullptr, kMkfs},
      {"fsck", required_argument, nullptr, kFsck},
      {nullptr, 0, nullptr, 0}};
  bool duration_given = false, nm_given = false, scrub_given = false, file_size_given = false;
  bool r = false, f = false, write_sync_given = false, mmap_sync_given = false;
  opterr = 0;
  optind = 1;
  int ch;
  while ((ch = getopt_long(argc, argv, ":hVn:m:db:l:srft:o:", longopts, nullptr)) != -1) {
    std::string arg = optarg ? optarg : "";
    switch (ch) {
      case 'h': *help = true; return;
      case 'V': *version = true; return;
      case 'n':
        if (!parse_uint(optarg, &o.write_workers)) throw UsageError{"-n: not a count: " + arg};
        nm_given = true;
        break;
      case 'm':
        if (!parse_uint(optarg, &o.mmap_workers)) throw UsageError{"-m: not a count: " + arg};
        nm_given = true;
        break;
      case 'd': o.o_direct = true; break;
      case 'b':
        if (!parse_size(optarg, &o.buffer_size)) throw UsageError{"-b: not a size: " + arg};
        break;
      case 'l':
        if (!parse_size(optarg, &o.file_size)) throw UsageError{"-l: not a size: " + arg};
        file_size_given = true;
        break;
      case 's': o.o_sync = true; break;
      case 'r': r = true; break;
      case 'f': f = true; break;
      case 't':
        if (!parse_seconds(optarg, &o.duration_s))
          throw UsageError{"-t: need a duration in seconds > 0, got '" + arg + "'"};
        duration_given = true;
        break;
      case 'o':
        if (!o.mount_options.empty()) o.mount_options += ',';
        o.mount_options += arg;
        break;
      case kSeed: {
        char* end = nullptr;
        errno = 0;
        o.seed = std::strtoull(optarg, &end, 0);
        if (errno || !*optarg || *end) throw UsageError{"--seed: not a number: " + arg};
        o.seed_given = true;
        break;
      }
      case kJson: o.json = true; break;
      case kReproduce: o.mode = Mode::kReproduce; break;
      case kImage: o.image = arg; break;
      case kImageSize: o.image_size = arg; break;
      case kPolicies: o.policies = split_commas(arg); break;
      case kScenarios: o.scenarios = arg; break;
      case kWorkers:
        if (!parse_uint(optarg, &o.scenario_workers))
          throw UsageError{"--workers: not a count: " + arg};
        break;
      case kNoScrub: o.scrub = false; scrub_given = false; break;
      case kScrub: o.scrub = true; scrub_given = true; break;
      case kForce: o.force = true; break;
      case kKeep: o.keep = true; break;
      case kWriteSync:
        if (!parse_sync(arg, "range", &o.write_sync))
          throw UsageError{"--write-sync: none, range, fsync or both"};
        write_sync_given = true;
        break;
      case kMmapSync:
        if (!parse_sync(arg, "msync", &o.mmap_sync))
          throw UsageError{"--mmap-sync: none, msync, fsync or both"};
        mmap_sync_given = true;
        break;
      case kStablefs: o.stablefs_bin = arg; break;
      case kMkfs: o.mkfs_bin = arg; break;
      case kFsck: o.fsck_bin = arg; break;
      case ':': throw UsageError{std::string("option ") + argv[optind - 1] + " needs a value"};
      default: throw UsageError{std::string("unknown option ") + argv[optind - 1]};
    }
  }
  // -r/-f apply to both kinds unless a kind's sync was given explicitly.
  // The reproducer's scenarios sync with sync_file_range/msync, as in 2011.
  SyncSteps common{r, f};
  if (o.mode == Mode::kReproduce && !r && !f) common = {true, false};
  if (!write_sync_given) o.write_sync = common;
  if (!mmap_sync_given) o.mmap_sync = common;
  if (scrub_given && o.image.empty())
    throw UsageError{"--scrub needs --image (the filesystem must be unmounted to scrub it)"};

  int positional = argc - optind;
  if (positional > 1) throw UsageError{"more than one FILE/DIR given"};
  if (positional == 1) o.target = argv[optind];
  if (o.mode == Mode::kStress && o.target.empty()) throw UsageError{"no FILE or DIR given"};
  validate(o, duration_given, nm_given, file_size_given);
}

}  // namespace

ParseOutcome parse_options(int argc, char** argv) {
  ParseOutcome out;
  bool help = false, version = false;
  try {
    parse_or_throw(argc, argv, out.options, &help, &version);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "wac: %s\n(wac --help for usage)\n", e.message.c_str());
    out.exit_now = true;
    out.exit_code = kExitUsage;
    return out;
  }
  if (help) {
    print_help(stdout);
    out.exit_now = true;
  } else if (version) {
    print_version(stdout, "wac", {boost_version(), xxhash_version()});
    out.exit_now = true;
  }
  return out;
}

}  // namespace stablefs::wac
