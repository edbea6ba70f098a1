// wac's command line: the original tool's options (-n -m -d -b -l -s -r -f)
// plus what real use needs (duration, seed, JSON, the reproducer).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace stablefs::wac {

constexpr int kExitOk = 0;
constexpr int kExitIntegrity = 1;   // integrity errors seen / race reproduced
constexpr int kExitUsage = 2;
constexpr int kExitNoRepro = 3;     // --image: protected clean, but `off` showed no race
constexpr int kExitRunFailed = 4;   // could not run (workers, mkfs, mount, fsck failed)

enum class Mode { kStress, kReproduce };

// What a worker does after each write. `range` is sync_file_range for a
// write() worker and msync(MS_SYNC) for an mmap worker.
struct SyncSteps {
  bool range = false;
  bool fsync = false;
};

struct Options {
  Mode mode = Mode::kStress;
  std::string target;  // stress: file (or directory, file wac.dat in it); reproduce: directory

  // Workload (stress mode; the reproducer sets its own per scenario).
  unsigned write_workers = 1;
  unsigned mmap_workers = 0;
  bool o_direct = false;
  bool o_sync = false;
  uint64_t buffer_size = 4096;
  uint64_t file_size = 65536;
  SyncSteps write_sync;
  SyncSteps mmap_sync;
  double duration_s = 10;
  uint64_t seed = 0;
  bool seed_given = false;
  bool json = false;

  // Reproducer.
  unsigned scenario_workers = 64;  // A/B/E/F use this many, C/D split it
  std::string scenarios = "ABCDEF";
  std::string image;               // --image: self-contained run over the policies
  std::string image_size = "256M";
  std::vector<std::string> policies = {"off", "wait", "shadow", "bounce"};
  std::string mount_options;       // extra -o options for --image mounts
  bool scrub = true;               // --image: fsck --scrub after each policy
  bool force = false;              // --image: overwrite an existing file
  bool keep = false;               // --image: keep image, logs and mountpoint dir
  std::string stablefs_bin, mkfs_bin, fsck_bin;  // "" = locate next to wac or on PATH
};

struct ParseOutcome {
  Options options;
  bool exit_now = false;  // --help printed, or a usage error
  int exit_code = kExitOk;
};

// Parses and validates argv. A usage error prints one clear line (and a
// pointer to --help) on stderr and yields exit code 2.
ParseOutcome parse_options(int argc, char** argv);
void print_help(FILE* out);

}  // namespace stablefs::wac
