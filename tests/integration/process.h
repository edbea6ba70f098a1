// Running the stablefs tools from tests: every child gets a deadline, so a
// tool that hangs fails the test instead of hanging the suite.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace stablefs::integ {

struct CommandResult {
  int exit_code = -1;   // valid when exited
  bool exited = false;  // false: killed by a signal (see term_signal) or timed out
  int term_signal = 0;
  bool timed_out = false;
  std::string output;  // stdout and stderr interleaved

  bool ok() const { return exited && exit_code == 0; }
  // "exit 4", "killed by signal 11", "timed out": for failure messages.
  std::string describe() const;
};

// Runs argv[0] (a path; no PATH search unless it has no slash) with stdout
// and stderr captured. A child still running at the deadline is SIGKILLed.
CommandResult run_command(const std::vector<std::string>& argv,
                          std::chrono::milliseconds deadline = std::chrono::seconds(60));

// Starts argv with stdin from /dev/null and stdout+stderr appended to
// log_path. Returns the child's pid, or -1 with errno set.
pid_t spawn_logged(const std::vector<std::string>& argv, const std::string& log_path);

// Waits for `pid` until the deadline. Returns true and fills *status when it
// was reaped; false when it is still running.
bool wait_with_deadline(pid_t pid, std::chrono::milliseconds deadline, int* status);

// "exit 0", "killed by signal 6": a waitpid status for failure messages.
std::string describe_wait_status(int status);

std::string read_file(const std::string& path);
// Trimmed output split into lines, empty lines dropped.
std::vector<std::string> nonempty_lines(const std::string& text);

}  // namespace stablefs::integ
