// The two kinds of worker process, as in the 2011 wac.c: one rewrites
// random ranges of the file with pwrite(), the other through a shared
// mapping. Each runs until the shared stop flag rises, recording every
// step in its slot of the shared counters.
#pragma once

#include <cstdint>
#include <string>

#include "tools/wac/options.h"
#include "tools/wac/shared_run.h"

namespace stablefs::wac {

enum class WorkerKind { kWrite, kMmap };

struct WorkerSpec {
  WorkerKind kind = WorkerKind::kWrite;
  size_t index = 0;  // slot in SharedRun, and part of the pattern and seed
  std::string path;
  bool o_direct = false;
  bool o_sync = false;
  uint64_t buffer_size = 4096;
  uint64_t file_size = 65536;
  SyncSteps sync;
  uint64_t seed = 0;
};

// The body of a forked worker: sets up, passes the start barrier, loops.
// Returns the process exit code (0, or 1 when set-up failed).
int run_worker(const WorkerSpec& spec, SharedRun& run);

// Fills `len` bytes with the pattern of (seed, worker, generation): two
// generations of one worker differ in every whole 8-byte word, and two
// consecutive ones already in the first byte, so a rewrite changes the
// bytes under writeback however short it is.
void fill_pattern(uint8_t* buf, size_t len, uint64_t seed, uint64_t worker, uint64_t generation);

}  // namespace stablefs::wac
