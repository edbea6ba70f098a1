// The FUSE low-level adapter: libfuse callbacks translated one-for-one into
// Filesystem calls. This header is what tools/stablefs.cc needs; the ops_*
// files share fs/request.h.
#pragma once

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 314
#endif
#include <fuse_lowlevel.h>

#include <mutex>

#include "core/filesystem.h"

namespace stablefs {

// Node ids are our inode numbers, passed through unchanged.
static_assert(sizeof(fuse_ino_t) >= sizeof(uint64_t), "fuse_ino_t must hold a 64-bit inode number");

// What every callback reaches through fuse_req_userdata(). Outlives the
// FUSE session: the daemon creates it before fuse_session_new and destroys
// it after fuse_session_destroy.
class MountContext {
 public:
  MountContext(Filesystem& fs, const MountOptions& opts) : fs_(fs), opts_(opts) {}
  MountContext(const MountContext&) = delete;
  MountContext& operator=(const MountContext&) = delete;

  Filesystem& fs() { return fs_; }
  const MountOptions& options() const { return opts_; }

  // How long the kernel may trust an entry or attributes. The daemon is
  // the only writer, so this bounds nothing but memory; one second keeps
  // `stat` cheap without pinning stale dentries for long.
  double timeout() const { return 1.0; }

  // Filesystem::unmount() exactly once, whether from FUSE's destroy or
  // from the daemon when the session never reached init. Later calls
  // return the first call's status.
  Status unmount_once();

 private:
  Filesystem& fs_;
  const MountOptions opts_;
  std::once_flag unmount_once_;
  Status unmount_status_;  // written once, under unmount_once_
};

// The full operation table, assembled from the ops_* files.
fuse_lowlevel_ops make_lowlevel_ops();

// Sets conn->want and the connection limits for this mount. Called from
// init; separate so tests can check what each option asks of the kernel.
void negotiate_capabilities(fuse_conn_info* conn, const MountOptions& opts);

}  // namespace stablefs
