#include "fs/request.h"

#include <cstring>
#include <ctime>

namespace stablefs {

Status MountContext::unmount_once() {
  std::call_once(unmount_once_, [this] {
    unmount_status_ = fs_.unmount();
    if (!unmount_status_.ok())
      SFS_LOG("unmount failed: %s", std::strerror(unmount_status_.error()));
  });
  return unmount_status_;
}

Creds caller_creds(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  return Creds{ctx->uid, ctx->gid, ctx->umask};
}

namespace {
struct timespec to_posix(const Timespec& t) {
  struct timespec ts {};
  ts.tv_sec = time_t(t.sec);
  ts.tv_nsec = long(t.nsec);
  return ts;
}
}  // namespace

struct stat to_stat(const Attr& a) {
  struct stat st {};
  st.st_ino = a.ino;
  st.st_mode = a.mode;
  st.st_nlink = a.nlink;
  st.st_uid = a.uid;
  st.st_gid = a.gid;
  st.st_size = off_t(a.size);
  st.st_blocks = blkcnt_t(a.blocks512);
  st.st_blksize = kBlockSize;
  st.st_rdev = dev_t(a.rdev);
  st.st_atim = to_posix(a.atime);
  st.st_mtim = to_posix(a.mtime);
  st.st_ctim = to_posix(a.ctime);
  return st;
}

Timespec to_timespec(const struct timespec& ts) {
  return Timespec{int64_t(ts.tv_sec), uint32_t(ts.tv_nsec)};
}

Timespec current_time() {
  struct timespec ts {};
  clock_gettime(CLOCK_REALTIME, &ts);
  return to_timespec(ts);
}

void reply_entry(fuse_req_t req, const Attr& a) {
  MountContext& m = mount_of(req);
  fuse_entry_param e{};
  e.ino = a.ino;
  e.generation = a.generation;
  e.attr = to_stat(a);
  e.attr_timeout = m.timeout();
  e.entry_timeout = m.timeout();
  if (fuse_reply_entry(req, &e) != 0) drop_references(m.fs(), a.ino, 1);
}

void drop_references(Filesystem& fs, uint64_t ino, uint64_t n) noexcept {
  try {
    fs.forget(ino, n);
  } catch (const std::exception& e) {
    SFS_LOG("forget(%llu): internal error: %s", (unsigned long long)ino, e.what());
  } catch (...) {
    SFS_LOG("forget(%llu): internal error", (unsigned long long)ino);
  }
}

void reply_attr(fuse_req_t req, const Attr& a) {
  struct stat st = to_stat(a);
  fuse_reply_attr(req, &st, mount_of(req).timeout());
}

}  // namespace stablefs
