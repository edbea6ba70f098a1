#include "tools/wac/workers.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace stablefs::wac {
namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [0, n) for n > 0 (the tiny modulo bias is irrelevant here).
uint64_t below(uint64_t& state, uint64_t n) { return splitmix64(state) % n; }

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// Set by SIGTERM from the parent: the parent's way to stop us when it is
// interrupted, besides the shared flag. SIGINT is ignored: Ctrl-C reaches
// the whole process group, and the parent alone decides how to stop.
volatile sig_atomic_t g_terminate = 0;
void on_sigterm(int) { g_terminate = 1; }

void install_worker_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_sigterm;
  sa.sa_flags = SA_RESTART;  // a stop must not turn an in-flight fsync into EINTR
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGINT, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  // A parent killed with -9 cannot stop us; its death does.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { if (fd_ >= 0) ::close(fd_); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

class Mapping {
 public:
  Mapping(void* p, size_t len) : p_(p), len_(len) {}
  ~Mapping() { if (p_ != MAP_FAILED) ::munmap(p_, len_); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  uint8_t* get() const { return static_cast<uint8_t*>(p_); }
  bool ok() const { return p_ != MAP_FAILED; }

 private:
  void* p_;
  size_t len_;
};

// Where the next write goes: buffered writes are small random ranges at
// random byte offsets (the 2011 reproducer's pattern); O_DIRECT writes are
// whole aligned buffers.
struct Range {
  uint64_t offset;
  uint64_t len;
};
Range next_range(const WorkerSpec& s, uint64_t& rng) {
  if (s.o_direct) {
    uint64_t slots = (s.file_size - s.buffer_size) / s.buffer_size + 1;
    return {below(rng, slots) * s.buffer_size, s.buffer_size};
  }
  uint64_t len = 1 + below(rng, s.buffer_size);
  return {below(rng, s.file_size - len + 1), len};
}

bool stopping(const SharedRun& run) { return g_terminate || run.stop_requested(); }

}  // namespace

void fill_pattern(uint8_t* buf, size_t len, uint64_t seed, uint64_t worker, uint64_t generation) {
  uint64_t state = seed ^ (worker * 0xd1342543de82ef95ull);
  const uint64_t base = splitmix64(state);
  for (size_t i = 0; i < len; i += 8) {
    // The generation sits in the low (first, little-endian) bytes of every
    // word, so even a 1-byte rewrite by this worker changes the byte; the
    // high bytes tell workers and positions apart.
    uint64_t v = base ^ (generation & 0xffffffffull) ^ (uint64_t(i / 8) << 48);
    size_t n = len - i < 8 ? len - i : 8;
    std::memcpy(buf + i, &v, n);
  }
}

int run_worker(const WorkerSpec& s, SharedRun& run) {
  install_worker_signals();
  WorkerSlot& slot = run.slot(s.index);
  int flags = (s.kind == WorkerKind::kWrite ? O_WRONLY : O_RDWR) | (s.o_direct ? O_DIRECT : 0) |
              (s.o_sync ? O_SYNC : 0);
  Fd fd(::open(s.path.c_str(), flags));
  void* raw = nullptr;
  // O_DIRECT wants aligned memory; page alignment suits every device.
  int rc = posix_memalign(&raw, 4096, s.buffer_size);
  std::unique_ptr<void, FreeDeleter> buf_owner(rc == 0 ? raw : nullptr);
  auto* buf = static_cast<uint8_t*>(buf_owner.get());
  Mapping map(s.kind == WorkerKind::kMmap && fd.get() >= 0
                  ? ::mmap(nullptr, s.file_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0)
                  : MAP_FAILED,
              s.file_size);
  bool set_up = true;
  if (fd.get() < 0) {
    slot.record_error(Step::kOpen, errno);
    set_up = false;
  } else if (!buf) {
    slot.record_error(Step::kOpen, rc);
    set_up = false;
  } else if (s.kind == WorkerKind::kMmap && !map.ok()) {
    slot.record_error(Step::kMmap, errno);
    set_up = false;
  }
  // Always pass the barrier, so the parent never waits for a failed worker.
  run.ready_and_wait_for_go();
  if (!set_up) return 1;

  const long page = sysconf(_SC_PAGESIZE);
  uint64_t rng = s.seed ^ ((s.index + 1) * 0x9e3779b97f4a7c15ull);
  for (uint64_t generation = 0; !stopping(run); generation++) {
    Range r = next_range(s, rng);
    fill_pattern(buf, r.len, s.seed, s.index, generation);
    bool failed = false;
    const uint64_t t0 = now_ns();
    if (s.kind == WorkerKind::kWrite) {
      ssize_t n = ::pwrite(fd.get(), buf, r.len, off_t(r.offset));
      if (n < 0) {
        slot.record_error(Step::kWrite, errno);
        failed = true;
      } else {
        slot.bytes.fetch_add(uint64_t(n), std::memory_order_relaxed);
      }
      if (s.sync.range &&
          ::sync_file_range(fd.get(), off_t(r.offset), off_t(r.len),
                            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                SYNC_FILE_RANGE_WAIT_AFTER) != 0) {
        slot.record_error(Step::kSyncFileRange, errno);
        failed = true;
      }
    } else {
      std::memcpy(map.get() + r.offset, buf, r.len);
      slot.bytes.fetch_add(r.len, std::memory_order_relaxed);
      uint64_t start = r.offset & ~uint64_t(page - 1);
      if (s.sync.range && ::msync(map.get() + start, r.offset + r.len - start, MS_SYNC) != 0) {
        slot.record_error(Step::kMsync, errno);
        failed = true;
      }
    }
    if (s.sync.fsync && ::fsync(fd.get()) != 0) {
      slot.record_error(Step::kFsync, errno);
      failed = true;
    }
    slot.record_latency(now_ns() - t0);
    if (failed) slot.failed_ops.fetch_add(1, std::memory_order_relaxed);
    slot.ops.fetch_add(1, std::memory_order_relaxed);
  }
  return 0;
}

}  // namespace stablefs::wac
