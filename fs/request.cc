#include "fs/request.h"

#include <chrono>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "fs/request_caller.h"

namespace stablefs {

MountContext::MountContext(Filesystem& fs, const MountOptions& opts)
    : fs_(fs), opts_(opts), published_(published_counters()) {
  if (published_) {
    requests_ = &published_->requests;
  } else {
    own_requests_ = std::make_unique<RequestCounters>();
    requests_ = own_requests_.get();
  }
}

void MountContext::adopt_open_file(std::unique_ptr<OpenFile> f) {
  std::lock_guard lk(open_files_mu_);
  OpenFile* key = f.get();
  open_files_.emplace(key, std::move(f));
}

void MountContext::release_open_file(OpenFile* f) {
  std::lock_guard lk(open_files_mu_);
  open_files_.erase(f);
}

namespace {
int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

void MountContext::note_data_written(uint64_t ino) {
  last_write_ns_[ino % kWriteSlots].store(steady_ns(), std::memory_order_relaxed);
}

void MountContext::invalidate_attrs(uint64_t ino) {
  // A negative offset invalidates attributes only: the kernel takes no
  // inode or page lock for it, so it is safe while the request that
  // changed them is still unanswered.
  if (fuse_session* se = session_.load())
    (void)fuse_lowlevel_notify_inval_inode(se, fuse_ino_t(ino), -1, 0);
}

double MountContext::attr_timeout(const Attr& a) const {
  const double longest = opts_.attr_timeout;
  if (!S_ISREG(a.mode) || longest <= kRecentWriteTimeout) return longest;
  if (opts_.writeback_cache) return kRecentWriteTimeout;
  const int64_t last = last_write_ns_[a.ino % kWriteSlots].load(std::memory_order_relaxed);
  if (last == 0) return longest;
  const auto window = std::chrono::milliseconds(opts_.writeback_delay_ms) + kDirtyWindow;
  const bool recent =
      steady_ns() - last < std::chrono::duration_cast<std::chrono::nanoseconds>(window).count();
  return recent ? kRecentWriteTimeout : longest;
}

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
  // A creation carries the ids the mount maps the caller to, so /proc is
  // read only when the kernel could not give them (fs/request_caller.h).
  if (ctx->uid != kInvalidRequestId && ctx->gid != kInvalidRequestId)
    return Creds{ctx->uid, ctx->gid, ctx->umask};
  RequestCaller caller(req);
  return Creds{caller.fsuid(), caller.fsgid(), ctx->umask};
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

fuse_entry_param entry_param(const MountContext& m, const Attr& a) {
  fuse_entry_param e{};
  e.ino = a.ino;
  e.generation = a.generation;
  e.attr = to_stat(a);
  e.attr_timeout = m.attr_timeout(a);
  e.entry_timeout = m.entry_timeout();
  return e;
}

void reply_entry(fuse_req_t req, const Attr& a) {
  MountContext& m = mount_of(req);
  fuse_entry_param e = entry_param(m, a);
  if (fuse_reply_entry(req, &e) != 0) drop_references(m.fs(), a.ino, 1);
}

void reply_negative_entry(fuse_req_t req) {
  fuse_entry_param e{};
  e.ino = 0;
  e.entry_timeout = mount_of(req).negative_timeout();
  fuse_reply_entry(req, &e);
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
  fuse_reply_attr(req, &st, mount_of(req).attr_timeout(a));
}

void reply_error(fuse_req_t req, int error) {
  if (error == EUCLEAN) {
    mount_of(req).fs().metadata_corruption_found();
    error = EIO;
  }
  fuse_reply_err(req, error);
}

}  // namespace stablefs
