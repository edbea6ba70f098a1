#include "tools/progress_display.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstring>

namespace stablefs {
namespace {

constexpr auto kRedrawInterval = std::chrono::milliseconds(100);

// "0:01:23"; "--:--" while there is nothing to extrapolate from.
std::string format_eta(double seconds) {
  if (!(seconds >= 0) || seconds > 99 * 3600.0) return "--:--";
  auto s = uint64_t(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%llu:%02llu:%02llu", (unsigned long long)(s / 3600),
                (unsigned long long)(s / 60 % 60), (unsigned long long)(s % 60));
  return buf;
}

}  // namespace

ProgressTargets progress_targets(bool quiet, int c_fd, std::string device) {
  ProgressTargets t;
  if (!quiet && ::isatty(STDERR_FILENO)) t.terminal = stderr;
  if (c_fd == 0 && ::isatty(STDOUT_FILENO)) t.terminal = stdout;
  if (c_fd > 0) {
    t.fd = c_fd;
    // A reader that goes away (fsck(8) interrupted) must cost the lines,
    // not the run: a write to its pipe then fails with EPIPE instead of
    // killing us halfway through a journal replay.
    std::signal(SIGPIPE, SIG_IGN);
  }
  t.device = std::move(device);
  return t;
}

Result<int> parse_progress_fd(std::string_view arg, std::string* why) {
  int fd = -1;
  auto [p, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), fd);
  if (arg.empty() || ec != std::errc() || p != arg.data() + arg.size() || fd < 0) {
    *why = "-C needs a file descriptor number, not '" + std::string(arg) + "'";
    return err(EINVAL);
  }
  if (fd == 0) return 0;  // e2fsck's "progress line on stdout"
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) {
    *why = "-C " + std::to_string(fd) + ": no such open file descriptor";
    return err(EINVAL);
  }
  if ((flags & O_ACCMODE) == O_RDONLY) {
    *why = "-C " + std::to_string(fd) + ": the descriptor is not open for writing";
    return err(EINVAL);
  }
  return fd;
}

Result<std::optional<int>> match_progress_option(int argc, char** argv, int* i,
                                                 std::string* why) {
  std::string_view a = argv[*i];
  if (a.substr(0, 2) != "-C") return std::optional<int>();
  if (a.size() == 2 && *i + 1 >= argc) {
    *why = "-C needs a file descriptor";
    return err(EINVAL);
  }
  auto fd = parse_progress_fd(a.size() == 2 ? argv[++*i] : a.substr(2), why);
  if (!fd.ok()) return Error{fd.error()};
  return std::optional<int>(*fd);
}

ProgressDisplay::ProgressDisplay(ProgressTargets targets, std::function<uint64_t()> bytes_done)
    : targets_(std::move(targets)), bytes_done_(std::move(bytes_done)), fd_(targets_.fd) {}

void ProgressDisplay::start_phase(int number, std::string name) {
  clear_line();
  phase_number_ = number;
  phase_ = std::move(name);
  phase_start_ = Clock::now();
  phase_start_bytes_ = bytes_done_ ? bytes_done_() : 0;
  last_fd_permille_ = -1;
}

std::function<void(uint64_t, uint64_t)> ProgressDisplay::callback() {
  if (!targets_.terminal && fd_ < 0) return {};
  return [this](uint64_t done, uint64_t total) { update(done, total); };
}

void ProgressDisplay::update(uint64_t done, uint64_t total) {
  done = std::min(done, total);
  if (targets_.terminal) draw_terminal(done, total);
  if (fd_ >= 0) write_fd_line(done, total);
}

void ProgressDisplay::draw_terminal(uint64_t done, uint64_t total) {
  Clock::time_point now = Clock::now();
  if (line_drawn_ && now - last_draw_ < kRedrawInterval) return;
  last_draw_ = now;
  double elapsed = std::chrono::duration<double>(now - phase_start_).count();
  double fraction = total ? double(done) / double(total) : 1.0;
  uint64_t bytes = (bytes_done_ ? bytes_done_() : 0) - phase_start_bytes_;
  double mib_s = elapsed > 0 ? double(bytes) / (1 << 20) / elapsed : 0.0;
  // Extrapolated from the fraction done so far, once there is a second of
  // it to go on: the first blocks of a run say little about the rest.
  double eta = fraction > 0 && elapsed >= 1.0 ? elapsed * (1 - fraction) / fraction : -1;
  // \r to redraw in place, ESC[K to erase what a longer line left.
  std::fprintf(targets_.terminal, "\r%s: %5.1f%%  %.1f MiB/s  ETA %s\033[K", phase_.c_str(),
               fraction * 100, mib_s, format_eta(eta).c_str());
  std::fflush(targets_.terminal);
  line_drawn_ = true;
}

void ProgressDisplay::write_fd_line(uint64_t done, uint64_t total) {
  int64_t permille = total ? int64_t(done * 1000 / total) : 1000;
  if (permille == last_fd_permille_) return;
  last_fd_permille_ = permille;
  if (::dprintf(fd_, "%d %llu %llu %s\n", phase_number_, (unsigned long long)done,
                (unsigned long long)total, targets_.device.c_str()) < 0)
    fd_ = -1;  // the reader is gone: stop writing, go on with the run
}

void ProgressDisplay::clear_line() {
  if (!line_drawn_) return;
  std::fprintf(targets_.terminal, "\r\033[K");
  std::fflush(targets_.terminal);
  line_drawn_ = false;
}

void ProgressDisplay::finish() { clear_line(); }

}  // namespace stablefs
