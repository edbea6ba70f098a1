// Mount options: what `-o a,b=c` means to stablefs and what goes on to
// libfuse and the kernel. mount.fuse3 hands the daemon every option from
// fstab or `mount -o`, so the parser knows three kinds: stablefs's own
// (into MountOptions), FUSE/kernel options (passed through), and generic
// mount(8) options that mean nothing here (accepted and dropped, as a
// kernel filesystem would). Anything else is an error, never ignored: a
// typo in `stable_pages=` must not silently mount without protection.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/result.h"
#include "core/filesystem.h"

namespace stablefs {

constexpr uint64_t kMinCacheBytes = 1ull << 20;
constexpr uint32_t kMaxWritebackDelayMs = 3'600'000;  // an hour
constexpr uint32_t kMaxJournalDataPages = 256;  // 1 MiB runs; longer ones stream better
// entry_timeout= and friends: a day, as passthrough_hp's default. Longer
// buys nothing (the kernel drops unused dentries under memory pressure
// anyway) and a larger number is more likely a typo.
constexpr double kMaxCacheTimeoutSeconds = 86400;
// threads=: most request threads the daemon runs (libfuse's loop starts one
// more whenever all are busy, up to this many). 64 lets that many fsyncs
// wait on one journal commit together.
constexpr int kMaxRequestThreads = 64;

struct ParsedMountOptions {
  MountOptions fs;
  // nbd_conns=: connections to an NBD server that advertises multi-conn
  // (the device's, not the engine's). 4 by default: nbdkit serves 16
  // commands per connection at once, and 4 connections carried 2.3x (reads)
  // to 3.2x (writes) the 4 KiB IOPS of one on a 1 ms-latency export.
  int nbd_connections = 4;
  // threads=N: request threads (1 to kMaxRequestThreads). One thread
  // answers the requests for a single file (the kernel sends them one at a
  // time, under the inode lock) with no hand-off between threads: the 2011
  // wac shapes ran 1.5x and 1.8x faster with 1 than with 64, while 64
  // fsyncers of their own files and 16 committing threads ran 3x and 2x
  // slower (bench/README.md, session 8). So 64 by default.
  int request_threads = kMaxRequestThreads;
  // Options for fuse_session_new's `-o`, in order, without duplicates.
  // Always holds default_permissions (the kernel checks permissions; the
  // engine trusts the caller) and, unless the user gave their own,
  // fsname= and subtype= (added by add_mount_identity).
  std::vector<std::string> fuse_options;
};

// Splits one -o argument on the commas not preceded by a backslash, and
// removes the escapes.
std::vector<std::string> split_mount_options(std::string_view csv);

// Parses one comma-separated option string into *out (call once per `-o`;
// later options override earlier ones). A backslash escapes a comma, as in
// libfuse. On error returns EINVAL and sets *why to one complete line,
// e.g. "stablefs: unknown mount option 'foo'".
Status parse_mount_options(std::string_view csv, ParsedMountOptions* out, std::string* why);

// Adds fsname=TARGET and subtype=stablefs unless already present, so
// /proc/mounts shows `TARGET MOUNTPOINT fuse.stablefs`.
void add_mount_identity(ParsedMountOptions* out, std::string_view target);

// The fuse_options joined for one `-o` argument, commas and backslashes
// inside values escaped for libfuse's option parser.
std::string join_fuse_options(const std::vector<std::string>& opts);

// "64M", "1G", "4096", "2T": a byte count with an optional binary K/M/G/T
// suffix (case-insensitive, an optional trailing 'B' or 'iB' allowed).
// EINVAL for anything else, ERANGE on overflow.
Result<uint64_t> parse_size(std::string_view s);

}  // namespace stablefs
