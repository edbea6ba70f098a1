// The parent's signal handling: SIGINT/SIGTERM ask for a clean stop (the
// run ends early, children are stopped and reaped, the report is still
// printed, scratch mounts are unmounted); SIGCHLD wakes the waiting
// parent. Both arrive through a self-pipe, so the parent waits with poll()
// on real events instead of sleeping.
#pragma once

namespace stablefs::wac {

void install_stop_signals();
// True once SIGINT or SIGTERM arrived.
bool stop_signal_received();
// Readable whenever a signal arrived since the last drain_signal_pipe().
int signal_pipe_fd();
void drain_signal_pipe();
// Waits until the signal pipe is readable or `timeout_ms` passes (-1:
// forever). Returns early on any signal.
void wait_for_signal(int timeout_ms);

}  // namespace stablefs::wac
