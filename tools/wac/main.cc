// wac: the write-after-checksum stress tool and reproducer. See --help and
// the README. Written fresh from the 2011 wac.c (stable-pages thread).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <random>

#include "tools/wac/integrity_probe.h"
#include "tools/wac/options.h"
#include "tools/wac/report.h"
#include "tools/wac/reproducer.h"
#include "tools/wac/stop_signals.h"
#include "tools/wac/worker_pool.h"

namespace stablefs::wac {
namespace {

int run_stress(const Options& o) {
  // Created (or truncated, as the original did) and sized up front, so
  // mmap workers never fault past EOF.
  int fd = ::open(o.target.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || ::ftruncate(fd, off_t(o.file_size)) != 0) {
    std::fprintf(stderr, "wac: %s: %s\n", o.target.c_str(), std::strerror(errno));
    if (fd >= 0) ::close(fd);
    return kExitRunFailed;
  }
  ::close(fd);

  StressReport r;
  r.options = &o;
  r.file = o.target;
  IntegrityObservation& obs = r.integrity;
  auto probe = CounterProbe::open(o.target, &obs.counters_note);
  KernelLogWatch kmsg;
  obs.have_kernel_log = kmsg.start(&obs.kernel_log_note);
  IntegritySnapshot before = probe ? probe->snapshot() : IntegritySnapshot{};

  std::vector<WorkerSpec> specs;
  for (unsigned i = 0; i < o.write_workers + o.mmap_workers; i++) {
    WorkerSpec w;
    w.kind = i < o.write_workers ? WorkerKind::kWrite : WorkerKind::kMmap;
    w.index = i;
    w.path = o.target;
    w.o_direct = o.o_direct;
    w.o_sync = o.o_sync;
    w.buffer_size = o.buffer_size;
    w.file_size = o.file_size;
    w.sync = w.kind == WorkerKind::kWrite ? o.write_sync : o.mmap_sync;
    w.seed = o.seed;
    specs.push_back(w);
  }
  std::string why;
  auto run = run_workers(specs, o.duration_s, &why);
  if (!run.ok()) {
    std::fprintf(stderr, "wac: %s\n", why.c_str());
    return kExitRunFailed;
  }
  r.run = std::move(*run);
  if (probe) {
    obs.have_counters = true;
    obs.mountpoint = probe->mountpoint();
    obs.delta = probe->snapshot().since(before);
  }
  obs.kernel_lines = kmsg.collect();
  if (o.json) print_stress_json(stdout, r);
  else print_stress_text(stdout, r);
  if (!r.run.failure.empty()) {
    std::fprintf(stderr, "wac: %s\n", r.run.failure.c_str());
    return kExitRunFailed;
  }
  return obs.errors() > 0 ? kExitIntegrity : kExitOk;
}

}  // namespace
}  // namespace stablefs::wac

int main(int argc, char** argv) {
  using namespace stablefs::wac;
  ParseOutcome parsed = parse_options(argc, argv);
  if (parsed.exit_now) return parsed.exit_code;
  Options& o = parsed.options;
  if (!o.seed_given) o.seed = std::random_device{}();
  install_stop_signals();
  try {
    if (o.mode == Mode::kStress) return run_stress(o);
    if (!o.image.empty()) return reproduce_with_image(o);
    return reproduce_on_directory(o);
  } catch (const std::exception& e) {  // a bug, but never an abort without a word
    std::fprintf(stderr, "wac: unexpected error: %s\n", e.what());
    return kExitRunFailed;
  }
}
