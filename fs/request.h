// What every ops_* file shares: reaching the mount from a request, the
// caller's credentials, Attr <-> struct stat, entry replies that keep the
// lookup count exact, and the guard that keeps exceptions out of libfuse
// and times every request.
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <exception>
#include <new>
#include <utility>

#include "core/base/log.h"
#include "fs/fuse_adapter.h"

namespace stablefs {

inline MountContext& mount_of(fuse_req_t req) {
  return *static_cast<MountContext*>(fuse_req_userdata(req));
}

// The ids a created node is owned by: the request's (on an idmapped mount,
// the ids the mount maps the caller to), and the umask.
Creds caller_creds(fuse_req_t req);
struct stat to_stat(const Attr& a);
Timespec to_timespec(const struct timespec& ts);
Timespec current_time();

// The entry for `a` with the mount's entry and attribute timeouts.
fuse_entry_param entry_param(const MountContext& m, const Attr& a);

// Replies with the entry. Every Attr from lookup/mknod/mkdir/symlink/link
// holds one kernel reference; when the reply cannot be delivered (the
// request was interrupted) the kernel never saw it, so we drop it here.
void reply_entry(fuse_req_t req, const Attr& a);
// A lookup miss the kernel may remember for negative_timeout (node id 0;
// a plain ENOENT would not be cached at all).
void reply_negative_entry(fuse_req_t req);
void reply_attr(fuse_req_t req, const Attr& a);

// Filesystem::forget for references the kernel never received. Used after
// the request was answered, so it must not throw into guarded() (which
// would answer the request a second time).
void drop_references(Filesystem& fs, uint64_t ino, uint64_t n) noexcept;

// FUSE_SET_ATTR_* bits and the kernel's struct stat as an engine SetAttr.
// ATIME_NOW/MTIME_NOW become `now`, so the engine sees concrete times.
SetAttr translate_setattr(const struct stat& attr, int to_set, Timespec now);

// Every error the engine returns is answered through here. EUCLEAN means
// the engine found corrupt metadata while serving the request: the mount
// applies its errors= behaviour (Filesystem::metadata_corruption_found)
// and the application gets EIO, as from any other block that fails
// verification.
void reply_error(fuse_req_t req, int error);
inline void reply_status(fuse_req_t req, const Status& s) { reply_error(req, s.error()); }

// Counts one request in the mount's counters and times it from the
// callback's entry to its reply (the timer ends after the body, whose last
// step is the reply): two clock reads and a few relaxed atomics.
class RequestTimer {
 public:
  // `also`, when given, counts the request a second time (a subset of
  // `op` worth watching on its own).
  RequestTimer(fuse_req_t req, RequestOp op, RequestStat* also = nullptr) noexcept
      : stat_(mount_of(req).requests()[op]), also_(also), start_(Clock::now()) {
    stat_.started();
    if (also_) also_->started();
  }
  RequestTimer(const RequestTimer&) = delete;
  RequestTimer& operator=(const RequestTimer&) = delete;
  ~RequestTimer() {
    auto ns = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start_)
                           .count());
    stat_.answered(ns);
    if (also_) also_->answered(ns);
  }

 private:
  using Clock = std::chrono::steady_clock;
  RequestStat& stat_;
  RequestStat* also_;
  Clock::time_point start_;
};

// Runs one callback body, timed as `op`. The body replies exactly once, as
// its last step (fuse_reply_* never throw), so an exception means no reply
// was sent yet and we send the error instead. Nothing escapes into
// libfuse's C frames.
// After FS_IOC_SHUTDOWN, what may still be answered: closing files and
// directories (their state is the kernel's), and stat/statfs of what the
// daemon has in memory, as a local filesystem does. Everything else is EIO.
constexpr bool answered_after_shutdown(RequestOp op) {
  switch (op) {
    case RequestOp::kRelease:
    case RequestOp::kReleasedir:
    case RequestOp::kFlush:
    case RequestOp::kGetattr:
    case RequestOp::kStatfs:
      return true;
    default:
      return false;
  }
}

template <class Body>
void guarded(fuse_req_t req, RequestOp op, RequestStat* also, Body&& body) noexcept {
  RequestTimer timer(req, op, also);
  if (!answered_after_shutdown(op) && mount_of(req).fs().shut_down())
    return (void)fuse_reply_err(req, EIO);
  try {
    body();
  } catch (const std::bad_alloc&) {
    fuse_reply_err(req, ENOMEM);
  } catch (const std::exception& e) {
    SFS_LOG("%s: internal error: %s", request_op_name(op).data(), e.what());
    fuse_reply_err(req, EIO);
  } catch (...) {
    SFS_LOG("%s: internal error", request_op_name(op).data());
    fuse_reply_err(req, EIO);
  }
}

template <class Body>
void guarded(fuse_req_t req, RequestOp op, Body&& body) noexcept {
  guarded(req, op, nullptr, std::forward<Body>(body));
}

// The same for FORGET and BATCH_FORGET, which never reply with an error:
// a failure to drop a reference is logged and the request still answered.
template <class Body>
void guarded_forget(fuse_req_t req, RequestOp op, Body&& body) noexcept {
  RequestTimer timer(req, op);
  try {
    body();
  } catch (const std::exception& e) {
    SFS_LOG("%s: internal error: %s", request_op_name(op).data(), e.what());
  } catch (...) {
    SFS_LOG("%s: internal error", request_op_name(op).data());
  }
  fuse_reply_none(req);
}

// fs/ops_flags.cc: the four inode-flag ioctls (chattr, xfs_io chattr),
// answered in full (reply or error) by inode_flags_ioctl.
bool is_inode_flags_ioctl(unsigned cmd);
void inode_flags_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned cmd, const void* in_buf,
                       size_t in_bufsz, size_t out_bufsz);

// Each file fills in its family of operations.
void add_name_ops(fuse_lowlevel_ops& ops);
void add_attr_ops(fuse_lowlevel_ops& ops);
void add_data_ops(fuse_lowlevel_ops& ops);
void add_dir_ops(fuse_lowlevel_ops& ops);
void add_xattr_ops(fuse_lowlevel_ops& ops);

}  // namespace stablefs
