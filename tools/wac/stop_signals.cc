#include "tools/wac/stop_signals.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

namespace stablefs::wac {
namespace {

volatile sig_atomic_t g_stop = 0;
int g_pipe[2] = {-1, -1};

void notify() {
  int saved = errno;
  char c = 0;
  (void)!::write(g_pipe[1], &c, 1);  // a full pipe already means "wake up"
  errno = saved;
}

void on_stop(int) {
  g_stop = 1;
  notify();
}
void on_child(int) { notify(); }

}  // namespace

void install_stop_signals() {
  if (g_pipe[0] < 0 && ::pipe2(g_pipe, O_NONBLOCK | O_CLOEXEC) != 0) g_pipe[0] = g_pipe[1] = -1;
  struct sigaction sa {};
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sa.sa_handler = on_stop;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sa.sa_handler = on_child;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

bool stop_signal_received() { return g_stop != 0; }
int signal_pipe_fd() { return g_pipe[0]; }

void drain_signal_pipe() {
  char buf[64];
  while (g_pipe[0] >= 0 && ::read(g_pipe[0], buf, sizeof buf) > 0) {
  }
}

void wait_for_signal(int timeout_ms) {
  pollfd p{g_pipe[0], POLLIN, 0};
  (void)::poll(&p, g_pipe[0] >= 0 ? 1 : 0, timeout_ms);
}

}  // namespace stablefs::wac
