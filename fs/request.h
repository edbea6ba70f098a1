// What every ops_* file shares: reaching the mount from a request, the
// caller's credentials, Attr <-> struct stat, entry replies that keep the
// lookup count exact, and the guard that keeps exceptions out of libfuse.
#pragma once

#include <sys/stat.h>

#include <exception>
#include <new>

#include "core/base/log.h"
#include "fs/fuse_adapter.h"

namespace stablefs {

inline MountContext& mount_of(fuse_req_t req) {
  return *static_cast<MountContext*>(fuse_req_userdata(req));
}

Creds caller_creds(fuse_req_t req);
struct stat to_stat(const Attr& a);
Timespec to_timespec(const struct timespec& ts);
Timespec current_time();

// Replies with the entry. Every Attr from lookup/mknod/mkdir/symlink/link
// holds one kernel reference; when the reply cannot be delivered (the
// request was interrupted) the kernel never saw it, so we drop it here.
void reply_entry(fuse_req_t req, const Attr& a);
void reply_attr(fuse_req_t req, const Attr& a);

// Filesystem::forget for references the kernel never received. Used after
// the request was answered, so it must not throw into guarded() (which
// would answer the request a second time).
void drop_references(Filesystem& fs, uint64_t ino, uint64_t n) noexcept;

// FUSE_SET_ATTR_* bits and the kernel's struct stat as an engine SetAttr.
// ATIME_NOW/MTIME_NOW become `now`, so the engine sees concrete times.
SetAttr translate_setattr(const struct stat& attr, int to_set, Timespec now);

inline void reply_status(fuse_req_t req, const Status& s) { fuse_reply_err(req, s.error()); }

// Runs one callback body. The body replies exactly once, as its last step
// (fuse_reply_* never throw), so an exception means no reply was sent yet
// and we send the error instead. Nothing escapes into libfuse's C frames.
template <class Body>
void guarded(fuse_req_t req, const char* op, Body&& body) noexcept {
  try {
    body();
  } catch (const std::bad_alloc&) {
    fuse_reply_err(req, ENOMEM);
  } catch (const std::exception& e) {
    SFS_LOG("%s: internal error: %s", op, e.what());
    fuse_reply_err(req, EIO);
  } catch (...) {
    SFS_LOG("%s: internal error", op);
    fuse_reply_err(req, EIO);
  }
}

// The same for forget, which never replies with an error: a failure to
// drop a reference is logged and the request is still answered.
template <class Body>
void guarded_forget(fuse_req_t req, Body&& body) noexcept {
  try {
    body();
  } catch (const std::exception& e) {
    SFS_LOG("forget: internal error: %s", e.what());
  } catch (...) {
    SFS_LOG("forget: internal error");
  }
  fuse_reply_none(req);
}

// Each file fills in its family of operations.
void add_name_ops(fuse_lowlevel_ops& ops);
void add_attr_ops(fuse_lowlevel_ops& ops);
void add_data_ops(fuse_lowlevel_ops& ops);
void add_dir_ops(fuse_lowlevel_ops& ops);
void add_xattr_ops(fuse_lowlevel_ops& ops);

}  // namespace stablefs
