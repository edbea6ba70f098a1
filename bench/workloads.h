// The workloads of bench/run, one function each. Every function returns a
// Figure (value + unit) or an errno-style failure; none of them judges the
// value: the harness prints figures, it never passes or fails on speed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace stablefs::bench {

struct Figure {
  double value = 0;
  std::string unit;
  std::string detail;  // human-readable counts behind the value, for stderr
  std::string name;    // row name when one workload yields several figures
};

// A failure is an errno plus what was being done; value-less Figure else.
struct Outcome {
  int error = 0;  // positive errno, 0 on success
  std::string what;
  Figure figure;
  std::vector<Figure> more;  // further figures of the same run, each named
};

Outcome failure(int error, std::string what);

// Sequential write of `bytes` to `path` in `block`-sized pwrites, then one
// fsync; the clock covers the fsync. MiB/s.
Outcome seq_write(const std::string& path, uint64_t bytes, uint64_t block);

// Reads `path` front to back in `block`-sized reads. MiB/s. The harness
// makes it cold (remount + drop_caches) before calling.
Outcome seq_read(const std::string& path, uint64_t block);

// `threads` threads, each creating files/threads empty files in its own
// subdirectory of `dir` (open O_CREAT|O_EXCL + close; no fsync). creates/s.
Outcome creates(const std::string& dir, unsigned files, unsigned threads);

// `procs` processes rewrite 4 KiB at random 4 KiB-aligned offsets with
// pwrite + fsync for `seconds`, each in its own file of `file_bytes`, or all
// in one shared file of that size. Files are laid out and fsynced before
// the clock starts. ops/s (one op = pwrite + fsync).
Outcome rewriters(const std::string& dir, unsigned procs, uint64_t file_bytes, double seconds,
                  bool shared);

// One thread, one directory `dir`/f: create `files` empty files (as
// creates), then stat() each of them by path (same mount, right after the
// creates: warm dentries), then unlink them all. Three figures, named
// creates (creates/s), stats (stats/s) and unlinks (unlinks/s).
Outcome create_stat_unlink(const std::string& dir, unsigned files);

// `threads` threads, each in its own subdirectory, loop: create a new file,
// write 4 KiB, fsync, close, for `seconds`. fsyncs/s over all threads.
Outcome commit_loop(const std::string& dir, unsigned threads, double seconds);

}  // namespace stablefs::bench
