// Log lines go to stderr (the daemon's stderr reaches syslog or the
// terminal, as for any FUSE daemon). One line per event, prefixed.
#pragma once

#include <cstdio>

#define SFS_LOG(fmt, ...) std::fprintf(stderr, "stablefs: " fmt "\n" __VA_OPT__(, ) __VA_ARGS__)
