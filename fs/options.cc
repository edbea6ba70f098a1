#include "fs/options.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

#include "core/io/nbd_device.h"

namespace stablefs {
namespace {

// FUSE and kernel options libfuse 3.14 understands; they go through as
// given. The mount flags (nosuid, noexec, ...) are passed on rather than
// dropped because the kernel honours them on a FUSE mount exactly as on
// any other: `mount -o noexec` must mean noexec.
constexpr std::array<std::string_view, 18> kPassThroughFlags = {
    "allow_other", "allow_root", "auto_unmount", "default_permissions", "debug",
    "suid",        "nosuid",     "dev",          "nodev",               "exec",
    "noexec",      "async",      "sync",         "dirsync",             "atime",
    "noatime",     "rw",         "ro"};
constexpr std::array<std::string_view, 7> kPassThroughKeys = {
    "fsname", "subtype", "max_read", "context", "fscontext", "defcontext", "rootcontext"};

// mount(8) and fstab options that a FUSE mount cannot express (libfuse
// would reject them) or that only mount(8) itself acts on.
constexpr std::array<std::string_view, 21> kIgnoredFlags = {
    "defaults",  "auto",        "noauto",   "user",          "nouser",      "users",
    "owner",     "group",       "_netdev",  "nofail",        "relatime",    "norelatime",
    "strictatime", "nostrictatime", "nodiratime", "diratime", "lazytime", "nolazytime",
    "iversion",  "noiversion",  "loud"};
constexpr std::array<std::string_view, 3> kIgnoredKeyPrefixes = {"x-", "comment=", "user="};

template <size_t N>
bool contains(const std::array<std::string_view, N>& set, std::string_view s) {
  return std::find(set.begin(), set.end(), s) != set.end();
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

Status fail(std::string* why, std::string msg) {
  if (why) *why = "stablefs: " + std::move(msg);
  return err(EINVAL);
}

Result<uint64_t> parse_uint(std::string_view s) {
  uint64_t v = 0;
  if (s.empty()) return err(EINVAL);
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec == std::errc::result_out_of_range) return err(ERANGE);
  if (ec != std::errc() || p != s.data() + s.size()) return err(EINVAL);
  return v;
}

// Keeps one entry per key: a later `fsname=` replaces an earlier one, and
// `ro` replaces `rw` (and the reverse), so the kernel sees one answer.
void set_fuse_option(std::vector<std::string>& opts, const std::string& opt) {
  auto eq = opt.find('=');
  std::string_view key = std::string_view(opt).substr(0, eq);
  auto same = [&](const std::string& o) {
    std::string_view k = std::string_view(o).substr(0, o.find('='));
    if (k == key) return true;
    return (key == "ro" && k == "rw") || (key == "rw" && k == "ro");
  };
  opts.erase(std::remove_if(opts.begin(), opts.end(), same), opts.end());
  opts.push_back(opt);
}

Status parse_stable_pages(std::string_view v, MountOptions& fs, std::string* why) {
  if (v == "wait") fs.stable_pages = StablePages::kWait;
  else if (v == "shadow") fs.stable_pages = StablePages::kShadow;
  else if (v == "bounce") fs.stable_pages = StablePages::kBounce;
  else if (v == "off") fs.stable_pages = StablePages::kOff;
  else
    return fail(why, "invalid value for stable_pages: '" + std::string(v) +
                         "' (expected wait, shadow, bounce or off)");
  return Status::Ok();
}

// errors=: ext4's names. `panic` is refused rather than taken for one of
// the others: a user who asked for it must not get less than they think.
Status parse_errors(std::string_view v, MountOptions& fs, std::string* why) {
  if (v == "remount-ro") fs.errors = ErrorsBehavior::kRemountRo;
  else if (v == "continue") fs.errors = ErrorsBehavior::kContinue;
  else
    return fail(why, "invalid value for errors: '" + std::string(v) +
                         "' (expected remount-ro or continue; panic is not supported)");
  return Status::Ok();
}

// cache_size= and meta_cache=: a size of at least kMinCacheBytes.
Status parse_cache_bytes(std::string_view key, std::string_view v, uint64_t* out,
                         std::string* why) {
  auto n = parse_size(v);
  if (!n.ok())
    return fail(why, "invalid value for " + std::string(key) + ": '" + std::string(v) +
                         "' (expected a size such as 256M or 1G)");
  if (*n < kMinCacheBytes)
    return fail(why, std::string(key) + "=" + std::string(v) + " is too small: the minimum is 1M");
  *out = *n;
  return Status::Ok();
}

Status parse_commit(std::string_view v, MountOptions& fs, std::string* why) {
  auto n = parse_uint(v);
  if (!n.ok() || *n == 0 || *n > std::numeric_limits<uint32_t>::max())
    return fail(why, "invalid value for commit: '" + std::string(v) +
                         "' (expected a whole number of seconds, at least 1)");
  fs.commit_seconds = uint32_t(*n);
  return Status::Ok();
}

Status parse_journal_data(std::string_view v, MountOptions& fs, std::string* why) {
  auto n = parse_uint(v);
  if (!n.ok() || *n > kMaxJournalDataPages)
    return fail(why, "invalid value for journal_data: '" + std::string(v) +
                         "' (expected pages, 0 to " +
                         std::to_string(kMaxJournalDataPages) + ")");
  fs.journal_data_pages = uint32_t(*n);
  return Status::Ok();
}

Status parse_on_off(std::string_view key, std::string_view v, bool* out, std::string* why) {
  if (v != "on" && v != "off")
    return fail(why, "invalid value for " + std::string(key) + ": '" + std::string(v) +
                         "' (expected on or off)");
  *out = v == "on";
  return Status::Ok();
}

Status parse_writeback_delay(std::string_view v, MountOptions& fs, std::string* why) {
  auto n = parse_uint(v);
  if (!n.ok() || *n > kMaxWritebackDelayMs)
    return fail(why, "invalid value for writeback_delay: '" + std::string(v) +
                         "' (expected milliseconds, 0 to " + std::to_string(kMaxWritebackDelayMs) +
                         ")");
  fs.writeback_delay_ms = uint32_t(*n);
  return Status::Ok();
}

// entry_timeout=, attr_timeout=, negative_timeout=: seconds, fractions
// allowed ("0.5"), 0 to kMaxCacheTimeoutSeconds.
Status parse_timeout(std::string_view key, std::string_view v, double* out, std::string* why) {
  double t = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), t, std::chars_format::fixed);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size() || !std::isfinite(t) || t < 0 ||
      t > kMaxCacheTimeoutSeconds)
    return fail(why, "invalid value for " + std::string(key) + ": '" + std::string(v) +
                         "' (expected seconds, 0 to " +
                         std::to_string(int64_t(kMaxCacheTimeoutSeconds)) + ", e.g. 60 or 0.5)");
  *out = t;
  return Status::Ok();
}

// nbd_conns=N: 1 to NbdDevice::kMaxConnections.
Status parse_nbd_conns(std::string_view v, ParsedMountOptions& out, std::string* why) {
  auto n = parse_uint(v);
  if (!n.ok() || *n < 1 || *n > uint64_t(NbdDevice::kMaxConnections))
    return fail(why, "invalid value for nbd_conns: '" + std::string(v) + "' (expected 1 to " +
                         std::to_string(NbdDevice::kMaxConnections) + ")");
  out.nbd_connections = int(*n);
  return Status::Ok();
}

// threads=N: 1 to kMaxRequestThreads.
Status parse_threads(std::string_view v, ParsedMountOptions& out, std::string* why) {
  auto n = parse_uint(v);
  if (!n.ok() || *n < 1 || *n > uint64_t(kMaxRequestThreads))
    return fail(why, "invalid value for threads: '" + std::string(v) + "' (expected 1 to " +
                         std::to_string(kMaxRequestThreads) + ")");
  out.request_threads = int(*n);
  return Status::Ok();
}

Status parse_one(const std::string& opt, ParsedMountOptions& out, std::string* why) {
  auto eq = opt.find('=');
  std::string_view key = std::string_view(opt).substr(0, eq);
  bool has_value = eq != std::string::npos;
  std::string_view value = has_value ? std::string_view(opt).substr(eq + 1) : "";
  MountOptions& fs = out.fs;

  // stablefs's own options.
  if (key == "stable_pages" && has_value) return parse_stable_pages(value, fs, why);
  if (key == "errors" && has_value) return parse_errors(value, fs, why);
  if (key == "cache_size" && has_value) return parse_cache_bytes(key, value, &fs.cache_bytes, why);
  if (key == "meta_cache" && has_value)
    return parse_cache_bytes(key, value, &fs.meta_cache_bytes, why);
  if (key == "commit" && has_value) return parse_commit(value, fs, why);
  if (key == "writeback_delay" && has_value) return parse_writeback_delay(value, fs, why);
  if (key == "journal_data" && has_value) return parse_journal_data(value, fs, why);
  if (key == "journal_deltas" && has_value)
    return parse_on_off(key, value, &fs.journal_deltas, why);
  if (key == "entry_timeout" && has_value) return parse_timeout(key, value, &fs.entry_timeout, why);
  if (key == "attr_timeout" && has_value) return parse_timeout(key, value, &fs.attr_timeout, why);
  if (key == "negative_timeout" && has_value)
    return parse_timeout(key, value, &fs.negative_timeout, why);
  if (opt == "verify_writes") return fs.verify_writes = true, Status::Ok();
  if (opt == "discard") return fs.discard = true, Status::Ok();
  if (key == "nbd_conns" && has_value) return parse_nbd_conns(value, out, why);
  if (key == "threads" && has_value) return parse_threads(value, out, why);
  if (opt == "nodiscard") return fs.discard = false, Status::Ok();
  if (opt == "norecovery" || opt == "noload") return fs.norecovery = true, Status::Ok();
  if (opt == "writeback_cache") return fs.writeback_cache = true, Status::Ok();
  if (key == "stable_pages" || key == "errors" || key == "cache_size" || key == "commit" ||
      key == "writeback_delay" || key == "meta_cache" || key == "entry_timeout" ||
      key == "journal_data" || key == "journal_deltas" || key == "nbd_conns" ||
      key == "attr_timeout" || key == "negative_timeout" || key == "threads")
    return fail(why, "mount option '" + std::string(key) + "' needs a value");

  // atime policy: FUSE leaves atime to the daemon, so the daemon must know.
  if (opt == "noatime") fs.atime = AtimeMode::kNoatime;
  if (opt == "relatime") fs.atime = AtimeMode::kRelatime;
  if (opt == "strictatime") fs.atime = AtimeMode::kStrict;
  if (opt == "nodiratime") fs.nodiratime = true;
  if (opt == "diratime") fs.nodiratime = false;

  if (contains(kPassThroughFlags, opt)) {
    if (opt == "ro") fs.read_only = true;
    if (opt == "rw") fs.read_only = false;
    set_fuse_option(out.fuse_options, opt);
    return Status::Ok();
  }
  if (has_value && contains(kPassThroughKeys, key)) {
    if (key == "max_read" && !parse_uint(value).ok())
      return fail(why, "invalid value for max_read: '" + std::string(value) + "'");
    if ((key == "fsname" || key == "subtype") && value.empty())
      return fail(why, "mount option '" + std::string(key) + "' needs a value");
    set_fuse_option(out.fuse_options, opt);
    return Status::Ok();
  }
  if (contains(kIgnoredFlags, opt)) return Status::Ok();
  for (std::string_view p : kIgnoredKeyPrefixes)
    if (starts_with(opt, p)) return Status::Ok();
  return fail(why, "unknown mount option '" + opt + "'");
}

}  // namespace

std::vector<std::string> split_mount_options(std::string_view csv) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < csv.size(); i++) {
    char c = csv[i];
    if (c == '\\' && i + 1 < csv.size()) {
      cur += csv[++i];
    } else if (c == ',') {
      out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(std::move(cur));
  return out;
}

Status parse_mount_options(std::string_view csv, ParsedMountOptions* out, std::string* why) {
  for (const std::string& opt : split_mount_options(csv)) {
    if (opt.empty()) continue;  // "a,,b" and a trailing comma are harmless
    SFS_TRY(parse_one(opt, *out, why));
  }
  if (std::find(out->fuse_options.begin(), out->fuse_options.end(), "default_permissions") ==
      out->fuse_options.end())
    out->fuse_options.insert(out->fuse_options.begin(), "default_permissions");
  return Status::Ok();
}

void add_mount_identity(ParsedMountOptions* out, std::string_view target) {
  auto has_key = [&](std::string_view key) {
    return std::any_of(out->fuse_options.begin(), out->fuse_options.end(),
                       [&](const std::string& o) { return starts_with(o, key); });
  };
  if (!has_key("fsname=")) out->fuse_options.push_back("fsname=" + std::string(target));
  if (!has_key("subtype=")) out->fuse_options.push_back("subtype=stablefs");
}

std::string join_fuse_options(const std::vector<std::string>& opts) {
  std::string s;
  for (const std::string& o : opts) {
    if (!s.empty()) s += ',';
    for (char c : o) {
      if (c == ',' || c == '\\') s += '\\';
      s += c;
    }
  }
  return s;
}

Result<uint64_t> parse_size(std::string_view s) {
  size_t digits = 0;
  while (digits < s.size() && std::isdigit(static_cast<unsigned char>(s[digits]))) digits++;
  auto n = parse_uint(s.substr(0, digits));
  if (!n.ok()) return Error{n.error()};
  std::string suffix;
  for (char c : s.substr(digits)) suffix += char(std::toupper(static_cast<unsigned char>(c)));
  unsigned shift = 0;
  if (suffix.empty() || suffix == "B") {
    shift = 0;
  } else {
    static constexpr std::string_view kUnits = "KMGT";
    auto unit = kUnits.find(suffix[0]);
    std::string_view rest = std::string_view(suffix).substr(1);
    if (unit == std::string_view::npos || !(rest.empty() || rest == "B" || rest == "IB"))
      return err(EINVAL);
    shift = 10 * unsigned(unit + 1);
  }
  if (*n > (std::numeric_limits<uint64_t>::max() >> shift)) return err(ERANGE);
  return *n << shift;
}

}  // namespace stablefs
