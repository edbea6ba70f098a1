// Creates/s and the group-commit loop (create + 4 KiB write + fsync).
// Threads start together on a latch so the clock measures contention, not
// thread start-up.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <latch>
#include <thread>
#include <vector>

#include "bench/clock.h"
#include "bench/workloads.h"

namespace stablefs::bench {

namespace {

// First error seen by any worker; later ones are dropped.
struct FirstError {
  std::atomic<int> error{0};
  std::string what;  // written only by the thread that set `error`
  void set(int e, std::string w) {
    int expected = 0;
    if (error.compare_exchange_strong(expected, e)) what = std::move(w);
  }
};

}  // namespace

Outcome creates(const std::string& dir, unsigned files, unsigned threads) {
  if (threads == 0 || files < threads) return failure(EINVAL, "creates: files < threads");
  if (int e = make_dir(dir)) return failure(e, "mkdir " + dir);
  std::vector<std::string> dirs;
  for (unsigned t = 0; t < threads; t++) {
    dirs.push_back(dir + "/c" + std::to_string(t));
    if (int e = make_dir(dirs.back())) return failure(e, "mkdir " + dirs.back());
  }
  unsigned per_thread = files / threads;
  FirstError err;
  std::latch go(threads + 1);
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < threads; t++) {
    workers.emplace_back([&, t] {
      go.arrive_and_wait();
      std::string base = dirs[t] + "/f";
      for (unsigned i = 0; i < per_thread && !err.error.load(); i++) {
        std::string p = base + std::to_string(i);
        int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) return err.set(errno, "create " + p);
        ::close(fd);
      }
    });
  }
  double start = now_seconds();
  go.arrive_and_wait();
  for (auto& w : workers) w.join();
  double secs = now_seconds() - start;
  if (err.error) return failure(err.error.load(), err.what);
  Outcome o;
  o.figure.value = double(per_thread) * threads / secs;
  o.figure.unit = "creates/s";
  char d[128];
  std::snprintf(d, sizeof d, "%u files, %u threads, %.3f s", per_thread * threads, threads, secs);
  o.figure.detail = d;
  return o;
}

Outcome create_stat_unlink(const std::string& dir, unsigned files) {
  if (files == 0) return failure(EINVAL, "files: no files");
  if (int e = make_dir(dir)) return failure(e, "mkdir " + dir);
  std::string d = dir + "/f";
  if (int e = make_dir(d)) return failure(e, "mkdir " + d);
  std::vector<std::string> paths;
  paths.reserve(files);
  for (unsigned i = 0; i < files; i++) paths.push_back(d + "/f" + std::to_string(i));

  double t0 = now_seconds();
  for (const auto& p : paths) {
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return failure(errno, "create " + p);
    ::close(fd);
  }
  double t1 = now_seconds();
  for (const auto& p : paths) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) return failure(errno, "stat " + p);
    if (st.st_size != 0) return failure(EIO, "stat " + p + ": size is not 0");
  }
  double t2 = now_seconds();
  for (const auto& p : paths) {
    if (::unlink(p.c_str()) != 0) return failure(errno, "unlink " + p);
  }
  double t3 = now_seconds();

  auto fig = [&](const char* name, const char* unit, double secs) {
    Figure f;
    f.value = double(files) / secs;
    f.unit = unit;
    f.name = name;
    char b[128];
    std::snprintf(b, sizeof b, "%u %s in %.3f s", files, name, secs);
    f.detail = b;
    return f;
  };
  Outcome o;
  o.figure = fig("creates", "creates/s", t1 - t0);
  o.more.push_back(fig("stats", "stats/s", t2 - t1));
  o.more.push_back(fig("unlinks", "unlinks/s", t3 - t2));
  o.figure.detail += "; " + o.more[0].detail + "; " + o.more[1].detail;
  return o;
}

Outcome commit_loop(const std::string& dir, unsigned threads, double seconds) {
  if (threads == 0) return failure(EINVAL, "commit: no threads");
  if (int e = make_dir(dir)) return failure(e, "mkdir " + dir);
  std::vector<std::string> dirs;
  for (unsigned t = 0; t < threads; t++) {
    dirs.push_back(dir + "/g" + std::to_string(t));
    if (int e = make_dir(dirs.back())) return failure(e, "mkdir " + dirs.back());
  }
  FirstError err;
  std::vector<uint64_t> counts(threads, 0);
  std::latch go(threads + 1);
  std::atomic<double> deadline{0};
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < threads; t++) {
    workers.emplace_back([&, t] {
      DataBuffer buf(4096, t + 1);
      go.arrive_and_wait();
      double end = deadline.load();
      std::string base = dirs[t] + "/f";
      uint64_t n = 0;
      while (now_seconds() < end && !err.error.load()) {
        std::string p = base + std::to_string(n);
        int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) return err.set(errno, "create " + p);
        int e = pwrite_all(fd, buf.data(), 4096, 0);
        if (e == 0 && ::fsync(fd) != 0) e = errno;
        ::close(fd);
        if (e) return err.set(e, "write+fsync " + p);
        counts[t] = ++n;
      }
    });
  }
  double start = now_seconds();
  deadline.store(start + seconds);
  go.arrive_and_wait();
  for (auto& w : workers) w.join();
  double secs = now_seconds() - start;
  if (err.error) return failure(err.error.load(), err.what);
  uint64_t total = 0;
  for (uint64_t c : counts) total += c;
  Outcome o;
  o.figure.value = double(total) / secs;
  o.figure.unit = "fsyncs/s";
  char d[128];
  std::snprintf(d, sizeof d, "%llu fsyncs, %u threads, %.3f s", (unsigned long long)total, threads,
                secs);
  o.figure.detail = d;
  return o;
}

}  // namespace stablefs::bench
