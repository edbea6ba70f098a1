#include "fs/daemon_options.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <sstream>

namespace stablefs {
namespace {

std::string on_off(bool b) { return b ? "on" : "off"; }

std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

const char* stable_pages_name(StablePages s) {
  switch (s) {
    case StablePages::kWait: return "wait";
    case StablePages::kShadow: return "shadow";
    case StablePages::kBounce: return "bounce";
    case StablePages::kOff: return "off";
  }
  return "?";
}

const char* atime_name(AtimeMode a) {
  switch (a) {
    case AtimeMode::kRelatime: return "relatime";
    case AtimeMode::kNoatime: return "noatime";
    case AtimeMode::kStrict: return "strictatime";
  }
  return "?";
}

bool has_fuse_option(const ParsedMountOptions& p, std::string_view opt) {
  return std::find(p.fuse_options.begin(), p.fuse_options.end(), opt) != p.fuse_options.end();
}

// The value of a `key=` FUSE option, or "none".
std::string fuse_option_value(const ParsedMountOptions& p, std::string_view key) {
  for (const std::string& o : p.fuse_options)
    if (o.size() > key.size() && o.compare(0, key.size(), key) == 0 && o[key.size()] == '=')
      return o.substr(key.size() + 1);
  return "none";
}

// sync and async both pass through (set_fuse_option keeps one per key):
// the later one wins, as in the kernel's parser.
bool synchronous(const ParsedMountOptions& p) {
  for (auto it = p.fuse_options.rbegin(); it != p.fuse_options.rend(); ++it) {
    if (*it == "sync") return true;
    if (*it == "async") return false;
  }
  return false;
}

// The DaemonOptions key an option given with -o sets, if it sets one.
// The per-mount flags and the mount's identity (fsname=, subtype=) set
// none.
std::optional<std::string> daemon_key_of(const std::string& opt) {
  static const char* const kValued[] = {
      "cache_size",    "meta_cache",       "stable_pages", "errors",   "commit",
      "writeback_delay", "journal_data",   "journal_deltas", "entry_timeout",
      "attr_timeout",  "negative_timeout", "nbd_conns",    "threads",  "max_read"};
  auto eq = opt.find('=');
  if (eq != std::string::npos) {
    std::string key = opt.substr(0, eq);
    for (const char* k : kValued)
      if (key == k) return key;
    return std::nullopt;
  }
  if (opt == "nodiscard") return "discard";
  if (opt == "noload") return "norecovery";
  if (opt == "noatime" || opt == "relatime" || opt == "strictatime") return "atime";
  if (opt == "diratime") return "nodiratime";
  if (opt == "async") return "sync";
  for (const char* k : {"verify_writes", "discard", "norecovery", "writeback_cache", "nodiratime",
                        "allow_other", "allow_root", "sync", "dirsync"})
    if (opt == k) return opt;
  return std::nullopt;
}

}  // namespace

DaemonOptions daemon_options_of(const ParsedMountOptions& p) {
  const MountOptions& fs = p.fs;
  return {
      {"cache_size", std::to_string(fs.cache_bytes)},
      {"meta_cache", std::to_string(fs.meta_cache_bytes)},
      {"stable_pages", stable_pages_name(fs.stable_pages)},
      {"verify_writes", on_off(fs.verify_writes)},
      {"discard", on_off(fs.discard)},
      {"journal_data", std::to_string(fs.journal_data_pages)},
      {"journal_deltas", on_off(fs.journal_deltas)},
      {"writeback_cache", on_off(fs.writeback_cache)},
      {"commit", std::to_string(fs.commit_seconds)},
      {"writeback_delay", std::to_string(fs.writeback_delay_ms)},
      {"entry_timeout", seconds(fs.entry_timeout)},
      {"attr_timeout", seconds(fs.attr_timeout)},
      {"negative_timeout", seconds(fs.negative_timeout)},
      {"norecovery", on_off(fs.norecovery)},
      {"errors", fs.errors == ErrorsBehavior::kContinue ? "continue" : "remount-ro"},
      {"atime", atime_name(fs.atime)},
      {"nodiratime", on_off(fs.nodiratime)},
      {"nbd_conns", std::to_string(p.nbd_connections)},
      {"threads", std::to_string(p.request_threads)},
      {"allow_other", on_off(has_fuse_option(p, "allow_other"))},
      {"allow_root", on_off(has_fuse_option(p, "allow_root"))},
      {"max_read", fuse_option_value(p, "max_read")},
      {"sync", on_off(synchronous(p))},
      {"dirsync", on_off(has_fuse_option(p, "dirsync"))},
      // Not an option a second mount can name (ro is per mount there), but
      // a daemon that refuses every change cannot serve a read-write mount.
      {"read_only", on_off(fs.read_only)},
  };
}

std::string encode_daemon_options(const DaemonOptions& d) {
  std::string out;
  for (const auto& [k, v] : d) {
    if (!out.empty()) out += ',';
    out += k + "=" + v;
  }
  return out;
}

DaemonOptions decode_daemon_options(std::string_view text) {
  DaemonOptions d;
  for (const std::string& kv : split_mount_options(text)) {
    auto eq = kv.find('=');
    if (eq != std::string::npos) d[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return d;
}

std::vector<std::string> daemon_option_conflicts(const std::vector<std::string>& option_strings,
                                                 const ParsedMountOptions& given,
                                                 const DaemonOptions& running) {
  const DaemonOptions mine = daemon_options_of(given);
  std::vector<std::string> named;
  for (const std::string& s : option_strings)
    for (const std::string& opt : split_mount_options(s))
      if (auto key = daemon_key_of(opt);
          key && std::find(named.begin(), named.end(), *key) == named.end())
        named.push_back(*key);
  std::vector<std::string> conflicts;
  for (const std::string& key : named) {
    auto theirs = running.find(key);
    const std::string& want = mine.at(key);
    // A daemon of an older stablefs may not report a key: it cannot be
    // shown to match, so it conflicts.
    if (theirs == running.end())
      conflicts.push_back(key + "=" + want + " (the daemon does not say what it runs with)");
    else if (theirs->second != want)
      conflicts.push_back(key + "=" + want + " (the daemon runs with " + key + "=" +
                          theirs->second + ")");
  }
  return conflicts;
}

}  // namespace stablefs
