// Progress of a long tool run (mkfs, fsck, scrub), shown two ways:
//  - on a terminal, one line redrawn in place at most 10 times a second:
//    "checking:  42.0%  512.3 MiB/s  ETA 0:01:23", erased when the run
//    ends or when the tool prints something else;
//  - with `-C FD`, e2fsck's machine-readable lines on that descriptor, one
//    per tenth of a percent done:
//      PHASE DONE TOTAL DEVICE
//    where PHASE is the pass number, DONE and TOTAL are the units of work
//    done and in all, and DEVICE the target as given.
// Nothing is shown when neither applies, so output into a pipe or a log
// holds only the result.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/base/result.h"

namespace stablefs {

struct ProgressTargets {
  FILE* terminal = nullptr;  // a stream that is a terminal, or nullptr
  int fd = -1;               // -C FD, or -1
  std::string device;        // named in the -C lines
};

// The targets for a tool's options: the terminal line on stderr when it is
// a terminal and the run is not quiet; `-C 0` is e2fsck's "draw the line on
// stdout" (only if stdout is a terminal); `-C N` for N > 0 writes lines to
// descriptor N.
ProgressTargets progress_targets(bool quiet, int c_fd, std::string device);

// `-C`'s argument: a descriptor number that is open for writing, or 0.
// EINVAL for anything else, with *why set to one line.
Result<int> parse_progress_fd(std::string_view arg, std::string* why);

// For a tool's argv loop: whether argv[*i] is `-C FD` or `-CFD`. If it is,
// consumes it (advancing *i past a separate FD) and returns the descriptor;
// std::nullopt for any other argument; EINVAL with *why for a bad or
// missing FD.
Result<std::optional<int>> match_progress_option(int argc, char** argv, int* i,
                                                 std::string* why);

class ProgressDisplay {
 public:
  // bytes_done: the device bytes moved so far, for the MiB/s figure.
  ProgressDisplay(ProgressTargets targets, std::function<uint64_t()> bytes_done);
  ~ProgressDisplay() { finish(); }
  ProgressDisplay(const ProgressDisplay&) = delete;
  ProgressDisplay& operator=(const ProgressDisplay&) = delete;

  // Starts pass `number` ("checking", "writing metadata"); the rate and ETA
  // are measured from here.
  void start_phase(int number, std::string name);
  void update(uint64_t done, uint64_t total);
  // The update() callback for core's progress hooks; empty when nothing is
  // shown, so the core skips the calls.
  std::function<void(uint64_t, uint64_t)> callback();
  // Erases the terminal line (it is drawn again at the next update), so a
  // message the tool prints starts on a clean line.
  void clear_line();
  // The end: erases the terminal line. (The core reports done == total
  // when a run completes, so the last -C line is already written; a run
  // that failed leaves its last line where it stopped.)
  void finish();

 private:
  using Clock = std::chrono::steady_clock;
  void draw_terminal(uint64_t done, uint64_t total);
  void write_fd_line(uint64_t done, uint64_t total);

  const ProgressTargets targets_;
  const std::function<uint64_t()> bytes_done_;
  int phase_number_ = 0;
  std::string phase_;
  Clock::time_point phase_start_;
  uint64_t phase_start_bytes_ = 0;
  Clock::time_point last_draw_;
  bool line_drawn_ = false;
  int fd_;  // -1 when there is no -C descriptor, or its reader went away
  int64_t last_fd_permille_ = -1;
};

}  // namespace stablefs
