// What stablefs asks of the kernel, one decision per flag. libfuse 3.14
// has already set its defaults in conn->want when init runs; each line
// below overrides one of them (or confirms it) for a reason of ours.
#include "fs/fuse_adapter.h"

namespace stablefs {
namespace {

void want(fuse_conn_info* conn, unsigned cap, bool on) {
  if (on && (conn->capable & cap)) conn->want |= cap;
  else conn->want &= ~cap;
}

}  // namespace

void negotiate_capabilities(fuse_conn_info* conn, const MountOptions& opts) {
  // Readahead and concurrent reads of one file: the engine locks per page.
  want(conn, FUSE_CAP_ASYNC_READ, true);
  // Synchronous direct I/O: with async DIO the kernel may complete an
  // O_DIRECT write without invalidating cached pages a buffered reader
  // then sees stale (xfstests generic/451).
  want(conn, FUSE_CAP_ASYNC_DIO, false);
  // Lookups and readdirs in one directory may run in parallel; the engine
  // locks per inode, not per tree.
  want(conn, FUSE_CAP_PARALLEL_DIROPS, true);
  // Only when asked (-o writeback_cache): the kernel then batches small
  // writes and owns mtime/ctime, which changes what a WRITE means.
  want(conn, FUSE_CAP_WRITEBACK_CACHE, opts.writeback_cache);
  // The engine's open() expects O_TRUNC as a separate setattr(size=0), so
  // truncation goes through the one code path that journals it.
  want(conn, FUSE_CAP_ATOMIC_O_TRUNC, false);
  // Splicing would hand us pipe pages we don't own; every write must be
  // copied into our cache pages before it is checksummed anyway.
  want(conn, FUSE_CAP_SPLICE_READ, false);
  want(conn, FUSE_CAP_SPLICE_WRITE, false);
  want(conn, FUSE_CAP_SPLICE_MOVE, false);
  // We are the only writer of the image, so the kernel's cached pages can
  // never be stale; re-validating them on every mtime change would only
  // throw away good pages.
  want(conn, FUSE_CAP_AUTO_INVAL_DATA, false);
  // File handles (open_by_handle_at, NFS export): node ids are inode
  // numbers, stable across mounts and guarded by a generation, and the
  // engine answers LOOKUP of "." by node id for any file type and of ".."
  // in any directory, so the kernel can rebuild an inode it forgot.
  want(conn, FUSE_CAP_EXPORT_SUPPORT, true);
  // HANDLE_KILLPRIV (v1) stays off: the daemon takes KILLPRIV_V2, which
  // libfuse 3.14 cannot ask for (fs/kernel_channel.h), and drops setuid,
  // setgid and file capabilities itself.
  want(conn, FUSE_CAP_HANDLE_KILLPRIV, false);
  // POSIX ACLs: the kernel enforces them (default_permissions reads them
  // through getxattr and caches them); the engine stores them and keeps
  // mode and ACL in step on setxattr, chmod and create (core/acl_fs.cc).
  want(conn, FUSE_CAP_POSIX_ACL, true);
  // With ACLs the umask is the filesystem's to apply: it is ignored under
  // a directory with a default ACL. Without this flag the kernel would
  // strip it from the mode before we could tell (fs/fuse/dir.c).
  want(conn, FUSE_CAP_DONT_MASK, true);
  // ioctls on directories reach us too: FS_IOC_SHUTDOWN is issued on the
  // mount point (fs/ops_attrs.cc).
  want(conn, FUSE_CAP_IOCTL_DIR, true);
  // A symlink's target never changes, so the kernel may cache it.
  want(conn, FUSE_CAP_CACHE_SYMLINKS, true);
  // readdirplus saves a lookup per entry for `ls -l`; AUTO lets the kernel
  // fall back to plain readdir for a bare `ls`.
  want(conn, FUSE_CAP_READDIRPLUS, true);
  want(conn, FUSE_CAP_READDIRPLUS_AUTO, true);

  // 1 MiB writes, the most libfuse 3.14's buffer holds: fewer, larger
  // requests and whole extents per write.
  conn->max_write = 1u << 20;
  // Readahead of up to 1 MiB per request: a cold sequential read becomes
  // a few large io_uring reads instead of many 128 KiB round trips.
  conn->max_readahead = 1u << 20;
  // Writeback of dirty pages and async reads are background requests; the
  // kernel's default of 12 in flight starves the loop's threads.
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  // Timestamps are stored with nanoseconds.
  conn->time_gran = 1;
}

}  // namespace stablefs
