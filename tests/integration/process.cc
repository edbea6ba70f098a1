#include "tests/integration/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace stablefs::integ {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<char*> c_argv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const auto& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

// In the child: only async-signal-safe calls until exec.
[[noreturn]] void exec_child(const std::vector<char*>& args) {
  if (std::strchr(args[0], '/') != nullptr) {
    execv(args[0], args.data());
  } else {
    execvp(args[0], args.data());
  }
  const char msg[] = "integ: exec failed\n";
  ssize_t ignored = write(2, msg, sizeof(msg) - 1);
  (void)ignored;
  _exit(127);
}

int remaining_ms(Clock::time_point end) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
  return left.count() < 0 ? 0 : int(left.count());
}

}  // namespace

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "wait status " + std::to_string(status);
}

std::string CommandResult::describe() const {
  if (timed_out) return "timed out";
  if (exited) return "exit " + std::to_string(exit_code);
  return "killed by signal " + std::to_string(term_signal);
}

CommandResult run_command(const std::vector<std::string>& argv,
                          std::chrono::milliseconds deadline) {
  CommandResult r;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    r.output = std::string("pipe: ") + std::strerror(errno);
    return r;
  }
  auto args = c_argv(argv);
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    exec_child(args);
  }
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    r.output = std::string("fork: ") + std::strerror(errno);
    return r;
  }
  const auto end = Clock::now() + deadline;
  char buf[65536];
  for (;;) {
    pollfd p{fds[0], POLLIN, 0};
    int n = poll(&p, 1, remaining_ms(end));
    if (n == 0) {
      r.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    ssize_t got = read(fds[0], buf, sizeof(buf));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    r.output.append(buf, size_t(got));
  }
  close(fds[0]);
  int status = 0;
  // The pipe closes when the child exits (or after the kill above); a
  // grandchild holding the pipe open could outlive it, so reap with a bound.
  if (!wait_with_deadline(pid, std::chrono::milliseconds(remaining_ms(end) + 1000), &status)) {
    kill(pid, SIGKILL);
    r.timed_out = true;
    waitpid(pid, &status, 0);
  }
  if (WIFEXITED(status) && !r.timed_out) {
    r.exited = true;
    r.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.term_signal = WTERMSIG(status);
  }
  return r;
}

pid_t spawn_logged(const std::vector<std::string>& argv, const std::string& log_path) {
  int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) return -1;
  auto args = c_argv(argv);
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(log, 1);
    dup2(log, 2);
    exec_child(args);
  }
  int saved = errno;
  close(log);
  errno = saved;
  return pid;
}

bool wait_with_deadline(pid_t pid, std::chrono::milliseconds deadline, int* status) {
  // Polling an external event (child exit) against a deadline; the interval
  // only bounds latency, nothing depends on it for correctness.
  const auto end = Clock::now() + deadline;
  for (;;) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (r < 0 && errno != EINTR) return true;  // not our child any more
    if (Clock::now() >= end) return false;
    usleep(5000);
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> nonempty_lines(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) {
    if (line.find_first_not_of(" \t\r") != std::string::npos) out.push_back(line);
  }
  return out;
}

}  // namespace stablefs::integ
