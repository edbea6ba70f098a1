#include "core/base/log.h"

#include <syslog.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>

namespace stablefs {
namespace {
std::atomic<bool> g_syslog{false};
}  // namespace

void log_to_syslog(bool on) {
  if (on) openlog("stablefs", LOG_PID, LOG_DAEMON);
  g_syslog = on;
}

void log_line(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  // One fprintf per line: concurrent lines never interleave mid-line.
  std::fprintf(stderr, "stablefs: %s\n", buf);
  if (g_syslog) syslog(LOG_ERR, "%s", buf);
}

}  // namespace stablefs
