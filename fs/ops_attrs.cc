// Attributes: getattr, setattr (with the kernel's "now" timestamps resolved
// here, so the engine only ever sees concrete times) and statfs.
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/statvfs.h>

#include <cstring>

#include "fs/kernel_channel.h"
#include "fs/request.h"
#include "fs/request_caller.h"

namespace stablefs {
namespace {

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* /*fi*/) {
  guarded(req, RequestOp::kGetattr, [&] {
    auto r = mount_of(req).fs().getattr(ino);
    if (r.ok()) reply_attr(req, *r);
    else reply_error(req, r.error());
  });
}

}  // namespace

SetAttr translate_setattr(const struct stat& attr, int to_set, Timespec now) {
  SetAttr sa;
  if (to_set & FUSE_SET_ATTR_MODE) sa.mode = attr.st_mode;
  if (to_set & FUSE_SET_ATTR_UID) sa.uid = attr.st_uid;
  if (to_set & FUSE_SET_ATTR_GID) sa.gid = attr.st_gid;
  if (to_set & FUSE_SET_ATTR_SIZE) sa.size = uint64_t(attr.st_size);
  // The kernel sends ATIME together with ATIME_NOW for utimensat(UTIME_NOW)
  // and for `touch`; NOW wins, and it is the daemon's clock that decides.
  if (to_set & FUSE_SET_ATTR_ATIME_NOW) sa.atime = now;
  else if (to_set & FUSE_SET_ATTR_ATIME) sa.atime = to_timespec(attr.st_atim);
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) sa.mtime = now;
  else if (to_set & FUSE_SET_ATTR_MTIME) sa.mtime = to_timespec(attr.st_mtim);
  sa.explicit_times = ((to_set & FUSE_SET_ATTR_ATIME) && !(to_set & FUSE_SET_ATTR_ATIME_NOW)) ||
                      ((to_set & FUSE_SET_ATTR_MTIME) && !(to_set & FUSE_SET_ATTR_MTIME_NOW));
  // Only with writeback_cache does the kernel own ctime and send it; the
  // engine stamps ctime itself otherwise.
  if (to_set & FUSE_SET_ATTR_CTIME) sa.ctime = to_timespec(attr.st_ctim);
  // libfuse 3.14 passes the kernel's FATTR_KILL_SUIDGID (bit 11) through
  // under this name; the kernel sends it only under KILLPRIV_V2.
  if (to_set & FUSE_SET_ATTR_KILL_SUID) sa.kill_suidgid = true;
  return sa;
}

namespace {

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                fuse_file_info* /*fi*/) {
  guarded(req, RequestOp::kSetattr, [&] {
    SetAttr sa = translate_setattr(*attr, to_set, current_time());
    MountContext& m = mount_of(req);
    // A truncate zeroes the tail of the last page in the cache, and that
    // page is written back (and may be allocated) later.
    if (sa.size) m.note_data_written(ino);
    auto r = m.fs().setattr(ino, sa);
    if (r.ok()) reply_attr(req, *r);
    else reply_error(req, r.error());
  });
}

void op_statfs(fuse_req_t req, fuse_ino_t /*ino*/) {
  guarded(req, RequestOp::kStatfs, [&] {
    auto r = mount_of(req).fs().statfs();
    if (!r.ok()) return (void)reply_error(req, r.error());
    struct statvfs st {};
    st.f_bsize = r->block_size;
    st.f_frsize = r->block_size;
    st.f_blocks = r->blocks;
    st.f_bfree = r->blocks_free;
    st.f_bavail = r->blocks_free;  // no blocks reserved for root
    st.f_files = r->files;
    st.f_ffree = r->files_free;
    st.f_favail = r->files_free;
    st.f_namemax = r->name_max;
    fuse_reply_statfs(req, &st);
  });
}

// FS_IOC_SHUTDOWN (ext4's and xfs's "going down", used by xfstests'
// godown) is _IOR: a FUSE daemon gets no input for it, so the flags the
// caller passed are invisible here and every shutdown is godown -f
// (commit the journal, then stop; MountedFs::shutdown). Like the kernel
// filesystems it needs CAP_SYS_ADMIN, which the daemon sees as uid 0.
// Any other ioctl is not ours: ENOTTY, as the kernel answers itself.
constexpr unsigned kFsIocShutdown = _IOR('X', 125, uint32_t);

// An ioctl's header has no ids once idmapped mounts are allowed; the
// caller's fsuid then comes from /proc (fs/request_caller.h).
bool from_root(fuse_req_t req) { return RequestCaller(req).fsuid() == 0; }

void shutdown_ioctl(fuse_req_t req) {
  if (!from_root(req)) return (void)fuse_reply_err(req, EPERM);
  Status s = mount_of(req).fs().shutdown();
  if (!s.ok()) return (void)reply_error(req, s.error());
  fuse_reply_ioctl(req, 0, nullptr, 0);
}

// FITRIM (fstrim) is _IOWR: the kernel passes the caller's struct
// fstrim_range in and copies our answer out, whose len is the bytes
// discarded. CAP_SYS_ADMIN, as for shutdown, is uid 0 here.
void fitrim_ioctl(fuse_req_t req, const void* in_buf, size_t in_bufsz, size_t out_bufsz) {
  if (!from_root(req)) return (void)fuse_reply_err(req, EPERM);
  fstrim_range range;
  if (in_bufsz < sizeof range || out_bufsz < sizeof range)
    return (void)fuse_reply_err(req, EINVAL);
  std::memcpy(&range, in_buf, sizeof range);
  auto trimmed = mount_of(req).fs().trim(range.start, range.len, range.minlen);
  if (!trimmed.ok()) return reply_error(req, trimmed.error());
  range.len = *trimmed;
  fuse_reply_ioctl(req, 0, &range, sizeof range);
}

// Which image this daemon serves (fs/mount_identity.h): anyone who can
// reach the mount may ask, as anyone can read its source in mountinfo.
void mount_identity_ioctl(fuse_req_t req, size_t out_bufsz) {
  const MountIdentity* id = mount_of(req).identity();
  if (!id) return (void)fuse_reply_err(req, ENOTTY);
  if (out_bufsz < sizeof *id) return (void)fuse_reply_err(req, EINVAL);
  fuse_reply_ioctl(req, 0, id, sizeof *id);
}

void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void* /*arg*/,
              fuse_file_info* /*fi*/, unsigned /*flags*/, const void* in_buf, size_t in_bufsz,
              size_t out_bufsz) {
  guarded(req, RequestOp::kIoctl, [&] {
    if (cmd == kFsIocShutdown) return shutdown_ioctl(req);
    if (cmd == FITRIM) return fitrim_ioctl(req, in_buf, in_bufsz, out_bufsz);
    if (cmd == kIocMountIdentity) return mount_identity_ioctl(req, out_bufsz);
    if (is_inode_flags_ioctl(cmd))
      return inode_flags_ioctl(req, ino, cmd, in_buf, in_bufsz, out_bufsz);
    fuse_reply_err(req, ENOTTY);
  });
}

}  // namespace

// GETATTR's answer, for a request libfuse never sees: errors as
// reply_error makes them, and nothing thrown into the channel's read.
std::function<StatxAttrs(uint64_t)> statx_source_for(MountContext& m) {
  return [&m](uint64_t ino) noexcept {
    StatxAttrs out;
    try {
      auto r = m.fs().getattr(ino);
      if (!r.ok()) {
        if (r.error() == EUCLEAN) m.fs().metadata_corruption_found();
        out.error = r.error() == EUCLEAN ? EIO : r.error();
        return out;
      }
      out.st = to_stat(*r);
      out.btime = {time_t(r->btime.sec), long(r->btime.nsec)};
      out.timeout = m.attr_timeout(*r);
    } catch (...) {
      out.error = EIO;
    }
    return out;
  };
}

void add_attr_ops(fuse_lowlevel_ops& ops) {
  ops.ioctl = op_ioctl;
  ops.getattr = op_getattr;
  ops.setattr = op_setattr;
  ops.statfs = op_statfs;
}

}  // namespace stablefs
