#include "tools/wac/reproducer.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "tools/progress_display.h"
#include "tools/wac/stop_signals.h"

namespace stablefs::wac {

std::vector<Scenario> scenarios_for(const Options& o) {
  const unsigned n = o.scenario_workers, half = n / 2;
  const std::string N = std::to_string(n), H = std::to_string(half), H2 = std::to_string(n - half);
  const Scenario all[] = {
      {'A', N + " write() + sync_file_range", n, 0, false},
      {'B', N + " mmap + msync", 0, n, false},
      {'C', H + " write() + " + H2 + " mmap", half, n - half, false},
      {'D', "C with O_DIRECT", half, n - half, true},
      {'E', "A with O_DIRECT", n, 0, true},
      {'F', "B with O_DIRECT", 0, n, true},
  };
  std::vector<Scenario> out;
  for (const Scenario& s : all)
    if (o.scenarios.find(s.name) != std::string::npos) out.push_back(s);
  return out;
}

uint64_t PolicyResult::integrity_errors() const {
  uint64_t n = 0;
  for (const auto& s : scenarios) n += s.integrity.errors();
  return n;
}

int PolicyResult::verdict() const {
  if (integrity_errors() > 0) return kExitIntegrity;
  if (!failure.empty()) return kExitRunFailed;
  for (const auto& s : scenarios)
    if (!s.failure.empty()) return kExitRunFailed;
  return kExitOk;
}

namespace {

// A fresh file of the full size, so mmap workers never touch past EOF.
Status create_file(const std::string& path, uint64_t size, std::string* why) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || ::ftruncate(fd, off_t(size)) != 0) {
    *why = path + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return err(errno);
  }
  ::close(fd);
  return Status::Ok();
}

// Flushes what the scenario left dirty, so its integrity errors are
// counted before the "after" snapshot and not charged to the next one.
int flush_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  int e = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return e;
}

}  // namespace

PolicyResult run_scenarios(const Options& o, const std::string& dir, const std::string& policy) {
  PolicyResult p;
  p.target = dir;
  std::string counters_note, kmsg_note;
  auto probe = CounterProbe::open(dir, &counters_note);
  KernelLogWatch kmsg;
  bool have_kmsg = kmsg.start(&kmsg_note);
  // One line per scenario on a terminal (stderr), time done and MiB/s
  // written; nothing into a pipe.
  uint64_t bytes_written = 0;
  ProgressDisplay progress(progress_targets(false, -1, dir), [&] { return bytes_written; });
  const bool show = bool(progress.callback());
  const uint64_t duration_ms = uint64_t(o.duration_s * 1000);
  const std::string policy_prefix = policy.empty() ? "" : "policy " + policy + ", ";

  for (const Scenario& sc : scenarios_for(o)) {
    if (stop_signal_received()) break;
    ScenarioResult r;
    r.scenario = sc;
    const std::string file = dir + "/wac-" + std::string(1, sc.name) + ".dat";
    std::string why;
    if (!create_file(file, o.file_size, &why).ok()) {
      r.failure = why;
      p.scenarios.push_back(std::move(r));
      continue;
    }
    std::vector<WorkerSpec> specs;
    for (unsigned i = 0; i < sc.writers + sc.mmappers; i++) {
      WorkerSpec w;
      w.kind = i < sc.writers ? WorkerKind::kWrite : WorkerKind::kMmap;
      w.index = i;
      w.path = file;
      w.o_direct = sc.o_direct;
      w.o_sync = o.o_sync;
      w.buffer_size = o.buffer_size;
      w.file_size = o.file_size;
      w.sync = w.kind == WorkerKind::kWrite ? o.write_sync : o.mmap_sync;
      w.seed = o.seed + uint64_t(sc.name);
      specs.push_back(w);
    }
    (void)kmsg.collect();  // drop what came before this scenario
    IntegritySnapshot before = probe ? probe->snapshot() : IntegritySnapshot{};
    bytes_written = 0;
    progress.start_phase(1, policy_prefix + "scenario " + std::string(1, sc.name) + " (" +
                                sc.what + ")");
    RunTick tick;
    if (show)
      tick = [&](double elapsed_s, uint64_t bytes) {
        bytes_written = bytes;
        progress.update(uint64_t(elapsed_s * 1000), duration_ms);
      };
    auto run = run_workers(specs, o.duration_s, &why, tick);
    progress.clear_line();
    if (run.ok()) {
      r.run = std::move(*run);
      if (!r.run.failure.empty()) r.failure = r.run.failure;
    } else {
      r.failure = why;
    }
    r.final_fsync_errno = flush_file(file);
    IntegrityObservation& obs = r.integrity;
    obs.have_counters = probe != nullptr;
    obs.counters_note = counters_note;
    if (probe) {
      obs.mountpoint = probe->mountpoint();
      obs.delta = probe->snapshot().since(before);
    }
    obs.have_kernel_log = have_kmsg;
    obs.kernel_log_note = kmsg_note;
    obs.kernel_lines = kmsg.collect();
    ::unlink(file.c_str());
    p.scenarios.push_back(std::move(r));
  }
  return p;
}

int reproduce_on_directory(const Options& o) {
  char buf[PATH_MAX];
  std::string dir = realpath(o.target.c_str(), buf) ? buf : o.target;
  std::vector<PolicyResult> runs{run_scenarios(o, dir, "")};
  int code = runs[0].verdict();
  if (o.json) print_reproduce_json(stdout, o, runs, code);
  else print_policy_table(stdout, o, runs[0]);
  return code;
}

namespace {

// A scratch directory for the mountpoint and the daemon logs.
std::string make_work_dir(std::string* why) {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/wac.XXXXXX";
  std::vector<char> t(tmpl.begin(), tmpl.end());
  t.push_back('\0');
  if (!::mkdtemp(t.data())) {
    *why = tmpl + ": " + std::strerror(errno);
    return "";
  }
  char buf[PATH_MAX];
  return realpath(t.data(), buf) ? buf : t.data();
}

PolicyResult run_policy(const Options& o, const ToolPaths& tools, const std::string& policy,
                        const std::string& work) {
  PolicyResult p;
  p.policy = policy;
  // Write-behind: the flusher starts writeback as soon as a write returns,
  // so rewrites meet pages under writeback (core/STABLE_PAGES.md).
  p.mount_options = "stable_pages=" + policy + ",verify_writes,writeback_delay=0";
  if (!o.mount_options.empty()) p.mount_options += "," + o.mount_options;
  std::string why;
  if (!make_filesystem(tools, o.image, o.image_size, &why).ok()) {
    p.failure = why;
    return p;
  }
  const std::string mnt = work + "/mnt";
  auto m = ScratchMount::mount(tools, o.image, mnt, p.mount_options,
                               work + "/daemon-" + policy + ".log", &why);
  if (!m.ok()) {
    p.failure = "mount: " + why;
    return p;
  }
  PolicyResult ran = run_scenarios(o, mnt, policy);
  p.target = ran.target;
  p.scenarios = std::move(ran.scenarios);
  std::string uwhy;
  if (!(*m)->unmount(&uwhy).ok()) p.failure = "unmount: " + uwhy;
  p.daemon_lines = (*m)->log_lines_with("integrity");
  if (o.scrub && !stop_signal_received()) p.scrub = scrub_filesystem(tools, o.image);
  return p;
}

}  // namespace

int combined_exit_code(const std::vector<PolicyResult>& runs) {
  bool protected_bad = false, failed = false, off_ran = false, off_reproduced = false;
  for (const auto& p : runs) {
    if (p.verdict() == kExitRunFailed) failed = true;
    if (p.protected_policy()) {
      if (p.integrity_errors() > 0 || (p.scrub.ran && !p.scrub.clean())) protected_bad = true;
    } else if (p.policy == "off") {
      off_ran = true;
      off_reproduced = p.integrity_errors() > 0;
    }
  }
  if (protected_bad) return kExitIntegrity;
  if (failed) return kExitRunFailed;
  if (off_ran && !off_reproduced) return kExitNoRepro;
  return kExitOk;
}

int reproduce_with_image(const Options& o) {
  std::string why;
  const std::string work = make_work_dir(&why);
  if (work.empty()) {
    std::fprintf(stderr, "wac: %s\n", why.c_str());
    return kExitRunFailed;
  }
  ::mkdir((work + "/mnt").c_str(), 0755);
  const ToolPaths tools = locate_tools(o);
  std::vector<PolicyResult> runs;
  for (const auto& policy : o.policies) {
    if (stop_signal_received()) break;
    if (!o.json) std::fprintf(stderr, "wac: policy %s ...\n", policy.c_str());
    runs.push_back(run_policy(o, tools, policy, work));
    if (!o.json) print_policy_table(stdout, o, runs.back());
    std::fflush(stdout);
  }
  int code = combined_exit_code(runs);
  if (o.json) print_reproduce_json(stdout, o, runs, code);
  else print_comparison(stdout, runs);
  // Keep the evidence when something went wrong; otherwise leave nothing.
  bool keep = o.keep || code == kExitIntegrity || code == kExitRunFailed;
  if (keep) {
    std::fprintf(stderr, "wac: image %s, daemon logs and mountpoint kept in %s\n", o.image.c_str(),
                 work.c_str());
  } else {
    for (const auto& policy : o.policies) ::unlink((work + "/daemon-" + policy + ".log").c_str());
    ::rmdir((work + "/mnt").c_str());
    ::rmdir(work.c_str());
    ::unlink(o.image.c_str());
  }
  return code;
}

}  // namespace stablefs::wac
