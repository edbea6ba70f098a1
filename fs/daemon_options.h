// The mount options a daemon honours for every mount of its image, as
// opposed to the per-mount flags (ro, nosuid, nodev, noexec) that the
// kernel keeps for each mount. A second mount of an image a daemon already
// serves shares that daemon (tools/share_mount.h), so it can honour only
// what the daemon already does: it compares the options it was given with
// these and refuses a difference (a user who asks for verify_writes or
// stable_pages=wait must not get less without being told).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "fs/options.h"

namespace stablefs {

// key -> canonical value ("cache_size" -> "268435456", "stable_pages" ->
// "wait", "allow_other" -> "on"). The keys are option names, so a conflict
// reads as the user wrote it.
using DaemonOptions = std::map<std::string, std::string>;

DaemonOptions daemon_options_of(const ParsedMountOptions& p);

// "key=value,key=value"; no key or value holds a comma or '='.
std::string encode_daemon_options(const DaemonOptions& d);
DaemonOptions decode_daemon_options(std::string_view text);

// One line per daemon option that `option_strings` (the -o arguments, as
// given) names and whose value, after parsing them all into `given`,
// differs from `running`'s, e.g. "cache_size=536870912 (the daemon runs
// with cache_size=268435456)". Options left out never conflict: the second
// mount takes the daemon's, as a second ext4 mount takes the superblock's.
std::vector<std::string> daemon_option_conflicts(const std::vector<std::string>& option_strings,
                                                 const ParsedMountOptions& given,
                                                 const DaemonOptions& running);

}  // namespace stablefs
