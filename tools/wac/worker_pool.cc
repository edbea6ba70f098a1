#include "tools/wac/worker_pool.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "tools/wac/stop_signals.h"

namespace stablefs::wac {
namespace {

using Clock = std::chrono::steady_clock;

// How long stopped workers get to finish their step (an fsync may wait on
// a slow writeback) before they are killed.
constexpr auto kReapGrace = std::chrono::seconds(30);
constexpr double kSetUpDeadlineS = 30;

int ms_until(Clock::time_point t) {
  auto d = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now()).count();
  return d < 0 ? 0 : int(d) + 1;
}

// Reaps whichever of `pids` (-1 = already reaped) exited; returns how many
// are still running.
size_t reap_exited(std::vector<pid_t>& pids, RunResult& out) {
  size_t running = 0;
  for (pid_t& pid : pids) {
    if (pid < 0) continue;
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) {
      if (r == pid && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) out.failed_workers++;
      pid = -1;
    } else {
      running++;
    }
  }
  return running;
}

void merge(const SharedRun& run, const std::vector<WorkerSpec>& specs, RunResult& out) {
  for (size_t i = 0; i < specs.size(); i++) {
    const WorkerSlot& s = run.slot(i);
    KindTotals& k = specs[i].kind == WorkerKind::kWrite ? out.write : out.mmap;
    k.workers++;
    k.ops += s.ops.load(std::memory_order_relaxed);
    k.failed_ops += s.failed_ops.load(std::memory_order_relaxed);
    k.bytes += s.bytes.load(std::memory_order_relaxed);
    LatencyHistogram h = s.histogram();
    k.latency.merge(h);
    out.latency.merge(h);
  }
  for (int step = 0; step < int(Step::kCount); step++) {
    for (int e = 0; e <= kMaxErrno; e++) {
      uint64_t n = 0;
      for (size_t i = 0; i < specs.size(); i++)
        n += run.slot(i).errors[step][e].load(std::memory_order_relaxed);
      if (n) out.errors.push_back({Step(step), e, n});
    }
  }
}

}  // namespace

uint64_t RunResult::errors_on(Step step, int errnum) const {
  for (const auto& e : errors)
    if (e.step == step && e.errnum == errnum) return e.count;
  return 0;
}

Result<RunResult> run_workers(const std::vector<WorkerSpec>& specs, double duration_s,
                              std::string* why, const RunTick& tick) {
  auto shared = SharedRun::create(specs.size(), why);
  if (!shared.ok()) return err(shared.error());
  SharedRun& run = **shared;
  RunResult out;

  std::fflush(nullptr);  // no duplicated stdio buffers in the children
  std::vector<pid_t> pids;
  pids.reserve(specs.size());
  for (size_t i = 0; i < specs.size(); i++) {
    pid_t pid = ::fork();
    if (pid == 0) _exit(run_worker(specs[i], run));
    if (pid < 0) {
      out.failure = std::string("fork: ") + std::strerror(errno);
      break;
    }
    pids.push_back(pid);
  }

  bool all_ready = out.failure.empty() && run.wait_all_ready(kSetUpDeadlineS);
  if (!all_ready && out.failure.empty()) out.failure = "a worker died before it was set up";
  if (!all_ready) run.request_stop();  // the released workers leave at once
  run.go();
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(duration_s));
  if (all_ready) {
    for (;;) {
      drain_signal_pipe();
      if (stop_signal_received()) {
        out.interrupted = true;
        break;
      }
      if (reap_exited(pids, out) == 0 || Clock::now() >= deadline) break;
      if (tick) {
        uint64_t bytes = 0;
        for (size_t i = 0; i < specs.size(); i++)
          bytes += run.slot(i).bytes.load(std::memory_order_relaxed);
        tick(std::chrono::duration<double>(Clock::now() - start).count(), bytes);
      }
      // A tick wants a wakeup every 100 ms; a signal or the deadline ends
      // the wait early either way.
      wait_for_signal(tick ? std::min(ms_until(deadline), 100) : ms_until(deadline));
    }
  }
  run.request_stop();
  const auto stopped = Clock::now();
  out.elapsed_s = std::chrono::duration<double>(stopped - start).count();
  for (pid_t pid : pids)
    if (pid > 0) ::kill(pid, SIGTERM);

  const auto reap_deadline = Clock::now() + kReapGrace;
  for (;;) {
    drain_signal_pipe();
    if (reap_exited(pids, out) == 0) break;
    if (Clock::now() >= reap_deadline) {
      for (pid_t& pid : pids) {
        if (pid < 0) continue;
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        out.failed_workers++;
        pid = -1;
      }
      break;
    }
    wait_for_signal(ms_until(reap_deadline));
  }
  merge(run, specs, out);
  if (pids.empty()) {
    *why = out.failure;
    return err(EAGAIN);
  }
  return out;
}

}  // namespace stablefs::wac
