// Inode flags through FUSE's ioctl path. The kernel turns chattr/lsattr's
// FS_IOC_GETFLAGS/SETFLAGS and xfs_io's FS_IOC_FSGETXATTR/FSSETXATTR into
// its fileattr calls, checks ownership and CAP_LINUX_IMMUTABLE itself, and
// sends the daemon an ioctl with both buffers sized (fs/fuse/ioctl.c,
// fuse_priv_ioctl): a 4-byte flags word or a struct fsxattr.
#include <linux/fs.h>

#include <cstring>

#include "core/inode_flags.h"
#include "fs/request.h"

namespace stablefs {
namespace {

// fsxattr fields other than the flags have no meaning here: answered as 0,
// and a request to set one is refused.
bool fsxattr_is_flags_only(const fsxattr& fa) {
  return fa.fsx_extsize == 0 && fa.fsx_projid == 0 && fa.fsx_cowextsize == 0;
}

void reply_flags(fuse_req_t req, Filesystem& fs, fuse_ino_t ino, unsigned cmd, size_t out_bufsz) {
  auto flags = fs.get_inode_flags(ino);
  if (!flags.ok()) return reply_error(req, flags.error());
  if (cmd == FS_IOC_GETFLAGS) {
    uint32_t word = *flags;
    if (out_bufsz < sizeof word) return (void)fuse_reply_err(req, EINVAL);
    return (void)fuse_reply_ioctl(req, 0, &word, sizeof word);
  }
  fsxattr fa{};
  // The engine speaks FS_*_FL; both words name the same five flags.
  auto disk = disk_flags_from_fs(*flags);
  fa.fsx_xflags = disk.ok() ? xflags_of(*disk) : 0;
  if (out_bufsz < sizeof fa) return (void)fuse_reply_err(req, EINVAL);
  fuse_reply_ioctl(req, 0, &fa, sizeof fa);
}

Result<uint32_t> requested_fs_flags(unsigned cmd, const void* in_buf, size_t in_bufsz) {
  if (cmd == FS_IOC_SETFLAGS) {
    uint32_t word;
    if (in_bufsz < sizeof word) return err(EINVAL);
    std::memcpy(&word, in_buf, sizeof word);
    return word;
  }
  fsxattr fa;
  if (in_bufsz < sizeof fa) return err(EINVAL);
  std::memcpy(&fa, in_buf, sizeof fa);
  if (!fsxattr_is_flags_only(fa)) return err(EOPNOTSUPP);
  auto disk = disk_flags_from_xflags(fa.fsx_xflags);
  if (!disk.ok()) return Error{disk.error()};
  return fs_flags_of(*disk);
}

}  // namespace

bool is_inode_flags_ioctl(unsigned cmd) {
  return cmd == FS_IOC_GETFLAGS || cmd == FS_IOC_SETFLAGS || cmd == FS_IOC_FSGETXATTR ||
         cmd == FS_IOC_FSSETXATTR;
}

void inode_flags_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned cmd, const void* in_buf,
                       size_t in_bufsz, size_t out_bufsz) {
  Filesystem& fs = mount_of(req).fs();
  if (cmd == FS_IOC_GETFLAGS || cmd == FS_IOC_FSGETXATTR)
    return reply_flags(req, fs, ino, cmd, out_bufsz);
  auto want = requested_fs_flags(cmd, in_buf, in_bufsz);
  if (!want.ok()) return (void)fuse_reply_err(req, want.error());
  Status s = fs.set_inode_flags(ino, *want);
  if (!s.ok()) return reply_status(req, s);
  // The kernel keeps the attributes it cached across the ioctl; the ctime
  // just moved (chattr is a change, xfstests generic/277).
  mount_of(req).invalidate_attrs(ino);
  fuse_reply_ioctl(req, 0, nullptr, 0);
}

}  // namespace stablefs
