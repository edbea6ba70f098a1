// The FUSE low-level adapter: libfuse callbacks translated one-for-one into
// Filesystem calls. This header is what tools/stablefs.cc needs; the ops_*
// files share fs/request.h.
#pragma once

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 314
#endif
#include <fuse_lowlevel.h>

#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "core/filesystem.h"
#include "core/stats/live_counters.h"
#include "fs/mount_identity.h"

namespace stablefs {

// Node ids are our inode numbers, passed through unchanged.
static_assert(sizeof(fuse_ino_t) >= sizeof(uint64_t), "fuse_ino_t must hold a 64-bit inode number");

// One open file description. Created at open/create; the kernel's handle
// (fi->fh) points at it from a delivered reply until RELEASE.
struct OpenFile {
  // Where this description stands in the file's writeback errors (see
  // Filesystem::sample_write_errors); read and moved under the engine's
  // inode lock.
  uint64_t write_error_cursor = 0;
};

// What every callback reaches through fuse_req_userdata(). Outlives the
// FUSE session: the daemon creates it before fuse_session_new and destroys
// it after fuse_session_destroy.
class MountContext {
 public:
  // Counts requests in the counters segment this process publishes
  // (published_counters()), or in private counters when there is none.
  MountContext(Filesystem& fs, const MountOptions& opts);
  MountContext(const MountContext&) = delete;
  MountContext& operator=(const MountContext&) = delete;

  Filesystem& fs() { return fs_; }
  const MountOptions& options() const { return opts_; }
  RequestCounters& requests() { return *requests_; }

  // How long the kernel may trust what we tell it. Every change to the
  // filesystem is a request through this mount, and the kernel updates or
  // invalidates its own caches after each one (fs/fuse/dir.c: a created
  // entry is instantiated from our reply; unlink, rmdir and rename drop
  // the victim's nlink and invalidate its ctime, and invalidate both
  // parents; link and setattr replies carry the new attributes; after
  // WRITE, COPY_FILE_RANGE and FALLOCATE it invalidates size, times and
  // blocks; after READ and READDIR the atime our relatime moved). So long
  // timeouts are safe with one exception, see attr_timeout(). A request
  // that fails after the engine acted (EEXIST on create, ENOENT on unlink)
  // makes the kernel drop the stale dentry itself.
  double entry_timeout() const { return opts_.entry_timeout; }
  // For a lookup miss: the kernel then caches "no such name". Safe for
  // the same reason: every name is created through the kernel, which
  // replaces the negative dentry with our reply.
  double negative_timeout() const { return opts_.negative_timeout; }
  // For the attributes in `a`. The one attribute the engine changes with
  // no request in flight is st_blocks of a regular file: blocks are
  // allocated when dirty pages are written back (delayed allocation), up
  // to a writeback_delay after the WRITE the kernel saw, and neither that
  // nor an FSYNC makes the kernel drop the attributes it holds. So a file
  // written in the last writeback_delay + kDirtyWindow gets at most
  // kRecentWriteTimeout: its block count is no staler than with the old
  // fixed timeout, as long as the flusher finishes within the window.
  // With writeback_cache the kernel sends WRITEs whenever it flushes, so
  // every regular file keeps the short timeout. (If the engine counted
  // delayed-allocated blocks in st_blocks, as ext4 does, none of this
  // would be needed.)
  double attr_timeout(const Attr& a) const;
  // Called at the start of every request that dirties `ino`'s pages.
  void note_data_written(uint64_t ino);

  // Which image this daemon serves, for the identity ioctl
  // (fs/mount_identity.h). Set before the session starts, never after:
  // requests read it without a lock. Until set the ioctl answers ENOTTY.
  void set_identity(const MountIdentity& id) {
    identity_ = id;
    has_identity_ = true;
  }
  const MountIdentity* identity() const { return has_identity_ ? &identity_ : nullptr; }

  // The session, for notifications; set once it exists (null in tests).
  void set_session(fuse_session* se) { session_.store(se); }
  // Makes the kernel drop the attributes it caches for `ino`: for the
  // changes whose reply carries none and after which the kernel keeps them,
  // an ioctl that sets inode flags (and the ctime with them), and setuid or
  // setgid dropped on a WRITE or FALLOCATE.
  void invalidate_attrs(uint64_t ino);

  static constexpr double kRecentWriteTimeout = 1.0;  // the old fixed timeout
  // A flusher pass writing back a full page cache fits in this.
  static constexpr std::chrono::seconds kDirtyWindow{10};

  // Filesystem::unmount() exactly once, whether from FUSE's destroy or
  // from the daemon when the session never reached init. Later calls
  // return the first call's status.
  Status unmount_once();

  // The open file descriptions the kernel holds handles to: adopt() before
  // the open reply, release() at RELEASE (or when the reply was not
  // delivered). The kernel sends
  // RELEASE asynchronously: one still queued when the session ends (a
  // close just before unmount) never arrives, and its description goes
  // with this context instead of leaking.
  void adopt_open_file(std::unique_ptr<OpenFile> f);
  void release_open_file(OpenFile* f);

 private:
  Filesystem& fs_;
  const MountOptions opts_;
  std::shared_ptr<LiveCounters> published_;       // keeps the segment mapped
  std::unique_ptr<RequestCounters> own_requests_;  // when nothing is published
  RequestCounters* requests_ = nullptr;            // one of the two
  // Steady-clock time (ns) of the last data write, by inode number modulo
  // the table size. Inodes sharing a slot only shorten each other's
  // attribute timeout, which is always safe.
  static constexpr size_t kWriteSlots = 4096;
  std::array<std::atomic<int64_t>, kWriteSlots> last_write_ns_{};
  std::mutex open_files_mu_;  // protects open_files_; a leaf lock
  std::unordered_map<OpenFile*, std::unique_ptr<OpenFile>> open_files_;
  std::atomic<fuse_session*> session_{nullptr};
  MountIdentity identity_;
  bool has_identity_ = false;
  std::once_flag unmount_once_;
  Status unmount_status_;  // written once, under unmount_once_
};

// The full operation table, assembled from the ops_* files.
fuse_lowlevel_ops make_lowlevel_ops();

// FUSE_STATX's answers for this mount (fs/kernel_channel.h): getattr's,
// with the birth time. m must outlive the session.
struct StatxAttrs;
std::function<StatxAttrs(uint64_t nodeid)> statx_source_for(MountContext& m);

// Sets conn->want and the connection limits for this mount. Called from
// init; separate so tests can check what each option asks of the kernel.
void negotiate_capabilities(fuse_conn_info* conn, const MountOptions& opts);

}  // namespace stablefs
