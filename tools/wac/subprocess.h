// Running the stablefs tools from wac: short commands to completion with
// their output captured, and the daemon as a long-lived child.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace stablefs::wac {

struct CommandResult {
  bool started = false;
  bool timed_out = false;
  int status = 0;  // waitpid status
  std::string output;  // stdout and stderr, interleaved

  // The exit code, or -1 when it did not start, timed out or was killed.
  int exit_code() const;
};

// Runs argv (argv[0] through PATH if it has no '/') and waits up to
// timeout_s; a command still running then is killed (only its own PID).
CommandResult run_command(const std::vector<std::string>& argv, int timeout_s);

// Starts argv in its own session (so a Ctrl-C meant for wac does not reach
// it) with stdout and stderr appended to log_path. -1 when fork fails; an
// exec failure shows as exit 127.
pid_t spawn_in_own_session(const std::vector<std::string>& argv, const std::string& log_path);

}  // namespace stablefs::wac
