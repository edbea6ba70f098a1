#include "tools/wac/integrity_probe.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace stablefs::wac {

IntegritySnapshot IntegritySnapshot::since(const IntegritySnapshot& b) const {
  IntegritySnapshot d;
  d.errors_write = errors_write - b.errors_write;
  d.errors_read = errors_read - b.errors_read;
  d.writeback_waits = writeback_waits - b.writeback_waits;
  d.wait_ns_total = wait_ns_total - b.wait_ns_total;
  d.wait_ns_max = wait_ns_max;
  d.shadow_copies = shadow_copies - b.shadow_copies;
  d.bounce_copies = bounce_copies - b.bounce_copies;
  d.pool_fallbacks = pool_fallbacks - b.pool_fallbacks;
  d.blocks_written = blocks_written - b.blocks_written;
  return d;
}

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_mountinfo(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 3 < s.size() && std::isdigit((unsigned char)s[i + 1])) {
      out += char((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

bool is_under(const std::string& path, const std::string& mnt) {
  if (mnt == "/") return true;
  return path.compare(0, mnt.size(), mnt) == 0 && (path.size() == mnt.size() || path[mnt.size()] == '/');
}

}  // namespace

std::string mountpoint_of(const std::string& path) {
  char buf[PATH_MAX];
  std::string real = realpath(path.c_str(), buf) ? buf : path;
  std::ifstream in("/proc/self/mountinfo");
  std::string line, best = "/";
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string id, parent, devno, root, point;
    ss >> id >> parent >> devno >> root >> point;
    point = unescape_mountinfo(point);
    if (is_under(real, point) && point.size() >= best.size()) best = point;
  }
  return best;
}

std::unique_ptr<CounterProbe> CounterProbe::open(const std::string& path, std::string* why) {
  std::string mnt = mountpoint_of(path);
  std::string detail;
  auto view = CountersView::open(mnt, &detail);
  if (!view.ok()) {
    *why = "no integrity counters available at " + mnt +
           (view.error() == ENOENT ? " (not a stablefs mount)" : " (" + detail + ")");
    return nullptr;
  }
  return std::unique_ptr<CounterProbe>(new CounterProbe(std::move(*view), mnt));
}

IntegritySnapshot CounterProbe::snapshot() const {
  const LiveCounters& c = view_->counters();
  IntegritySnapshot s;
  s.errors_write = c.integrity_errors_write.load();
  s.errors_read = c.integrity_errors_read.load();
  s.writeback_waits = c.writeback_waits.load();
  s.wait_ns_total = c.writeback_wait_ns_total.load();
  s.wait_ns_max = c.writeback_wait_ns_max.load();
  s.shadow_copies = c.shadow_copies.load();
  s.bounce_copies = c.bounce_copies.load();
  s.pool_fallbacks = c.shadow_pool_fallbacks.load();
  s.blocks_written = c.blocks_written.load();
  return s;
}

bool looks_like_integrity_error(const std::string& message) {
  std::string m = message;
  std::transform(m.begin(), m.end(), m.begin(), [](unsigned char c) { return std::tolower(c); });
  // sd's sense-code texts for T10 PI failures, and the block layer's and
  // HBA drivers' (scsi_debug, lpfc, qla2xxx, mpt3sas) wordings.
  static const char* const kPhrases[] = {
      "guard check failed", "reference tag check failed", "application tag check failed",
      "guard tag", "ref tag", "reference tag", "app tag", "protection information",
      "integrity error", "dif error", "dix error", "dif/dix", "t10 pi"};
  for (const char* p : kPhrases)
    if (m.find(p) != std::string::npos) return true;
  // "DIF"/"DIX" as whole words in the original case (not "different").
  for (const char* w : {"DIF", "DIX"}) {
    for (size_t at = message.find(w); at != std::string::npos; at = message.find(w, at + 1)) {
      bool left = at == 0 || !std::isalnum((unsigned char)message[at - 1]);
      bool right = at + 3 >= message.size() || !std::isalnum((unsigned char)message[at + 3]);
      if (left && right) return true;
    }
  }
  return false;
}

bool KernelLogWatch::start(std::string* why) {
  fd_ = ::open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd_ < 0) {
    *why = std::string("cannot read the kernel log (/dev/kmsg): ") + std::strerror(errno);
    return false;
  }
  ::lseek(fd_, 0, SEEK_END);  // only what the run produces
  return true;
}

std::vector<std::string> KernelLogWatch::collect() {
  std::vector<std::string> out;
  if (fd_ < 0) return out;
  char rec[8192];
  for (;;) {
    ssize_t n = ::read(fd_, rec, sizeof rec - 1);
    if (n < 0 && errno == EPIPE) continue;  // overwritten records: go on with the next
    if (n <= 0) break;                      // EAGAIN: nothing more
    rec[n] = '\0';
    // "prio,seq,usec,flags;message\n" followed by continuation lines.
    const char* semi = std::strchr(rec, ';');
    if (!semi) continue;
    std::string msg(semi + 1);
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
    if (looks_like_integrity_error(msg)) out.push_back(msg);
  }
  return out;
}

KernelLogWatch::~KernelLogWatch() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace stablefs::wac
