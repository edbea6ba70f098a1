// Per-opcode counters of the FUSE requests the daemon answers: how many,
// and how long each took from the callback's entry to its reply. Part of
// the live counters segment (live_counters.h), so the layout rules are
// that file's: fixed size, 8-byte lock-free atomics only, and any change
// bumps kCountersVersion.
//
// Writers (the FUSE loop threads) use relaxed atomics: a reader sees each
// field exactly but the three fields of one opcode need not be from the
// same instant, which is fine for an average over many requests.
//
// A request is counted when its callback starts and timed when it has
// replied. So whoever saw the reply (an application whose syscall
// returned) also finds the request in `count`; a request still in flight
// is in `count` but not yet in `total_ns`.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

namespace stablefs {

// The FUSE opcodes the daemon implements, in the kernel's opcode order.
// INIT and DESTROY are session events, not requests; INTERRUPT is handled
// inside libfuse; opcodes we do not implement (ACCESS, IOCTL, POLL, locks,
// BMAP, STATX, ...) are answered ENOSYS by libfuse without reaching us,
// and the kernel stops sending them after the first.
enum class RequestOp : uint32_t {
  kLookup,
  kForget,
  kGetattr,
  kSetattr,
  kReadlink,
  kSymlink,
  kMknod,
  kMkdir,
  kUnlink,
  kRmdir,
  kRename,
  kLink,
  kOpen,
  kRead,
  kWrite,
  kStatfs,
  kRelease,
  kFsync,
  kSetxattr,
  kGetxattr,
  kListxattr,
  kRemovexattr,
  kFlush,
  kOpendir,
  kReaddir,
  kReleasedir,
  kFsyncdir,
  kCreate,
  kBatchForget,
  kFallocate,
  kReaddirplus,
  kRename2,
  kLseek,
  kCopyFileRange,
  kIoctl,
};
constexpr size_t kRequestOpCount = size_t(RequestOp::kIoctl) + 1;

// The kernel's names without the FUSE_ prefix, indexed by RequestOp.
constexpr std::array<std::string_view, kRequestOpCount> kRequestOpNames = {
    "LOOKUP",     "FORGET",   "GETATTR",  "SETATTR",     "READLINK",     "SYMLINK",
    "MKNOD",      "MKDIR",    "UNLINK",   "RMDIR",       "RENAME",       "LINK",
    "OPEN",       "READ",     "WRITE",    "STATFS",      "RELEASE",      "FSYNC",
    "SETXATTR",   "GETXATTR", "LISTXATTR", "REMOVEXATTR", "FLUSH",       "OPENDIR",
    "READDIR",    "RELEASEDIR", "FSYNCDIR", "CREATE",    "BATCH_FORGET", "FALLOCATE",
    "READDIRPLUS", "RENAME2", "LSEEK",    "COPY_FILE_RANGE", "IOCTL"};
static_assert(
    [] {
      for (std::string_view n : kRequestOpNames)
        if (n.empty()) return false;
      return true;
    }(),
    "every RequestOp has a name");

constexpr std::string_view request_op_name(RequestOp op) { return kRequestOpNames[size_t(op)]; }

// One kind of request: count, and callback-to-reply time in nanoseconds.
struct RequestStat {
  std::atomic<uint64_t> count{0};
  std::atomic<uint64_t> total_ns{0};
  std::atomic<uint64_t> max_ns{0};

  void started() { count.fetch_add(1, std::memory_order_relaxed); }
  void answered(uint64_t ns) {
    total_ns.fetch_add(ns, std::memory_order_relaxed);
    uint64_t seen = max_ns.load(std::memory_order_relaxed);
    while (ns > seen && !max_ns.compare_exchange_weak(seen, ns, std::memory_order_relaxed)) {
    }
  }
};

struct RequestCounters {
  std::array<RequestStat, kRequestOpCount> ops;
  // The subset of GETXATTR asking for security.capability. The kernel
  // sends one before every write(2) to learn whether the write must drop
  // file capabilities, unless the daemon negotiates HANDLE_KILLPRIV_V2,
  // which libfuse 3.14 cannot; this shows what that costs.
  RequestStat getxattr_security_capability;

  RequestStat& operator[](RequestOp op) { return ops[size_t(op)]; }
  const RequestStat& operator[](RequestOp op) const { return ops[size_t(op)]; }
};
static_assert(sizeof(RequestStat) == 3 * sizeof(uint64_t), "a stat is three 8-byte atomics");

}  // namespace stablefs
