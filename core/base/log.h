// Log lines: one line per event, prefixed "stablefs: ". They go to stderr
// (the terminal or a log file in the foreground) and, for a daemon that
// left its terminal, to syslog, so integrity errors are never lost.
#pragma once

namespace stablefs {

void log_line(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// Also send every line to syslog (LOG_DAEMON, tag "stablefs").
void log_to_syslog(bool on);

}  // namespace stablefs

#define SFS_LOG(fmt, ...) ::stablefs::log_line(fmt __VA_OPT__(, ) __VA_ARGS__)
