// The /dev/fuse channel under libfuse, for the five things libfuse 3.14
// cannot do: negotiate FUSE_HANDLE_KILLPRIV_V2 and FUSE_ALLOW_IDMAP, tell
// the filesystem that a WRITE carries FUSE_WRITE_KILL_SUIDGID, pass on
// FUSE_TMPFILE, and answer FUSE_STATX.
//
// Without KILLPRIV_V2 the kernel keeps the filesystem's superblock out of
// SB_NOSEC and, before every write(2), asks GETXATTR security.capability
// to learn whether there are privileges to drop: one extra round trip per
// write. With it, the kernel leaves the dropping to the filesystem and
// says, in each request, when the VFS would drop setuid/setgid: a WRITE
// or a truncating SETATTR by a caller without CAP_FSETID, and every chown
// of a non-directory (fs/ops_data.cc, fs/ops_attrs.cc, and
// MountedFs::kill_privileges do the dropping).
//
// libfuse reads requests and writes replies through the hooks installed
// here (fuse_session_custom_io, on the fd fuse_session_mount opened):
// the reply to INIT gets the KILLPRIV_V2 flag when the kernel offered it,
// and each request's header and WRITE flags are noted for the thread that
// reads it, which is the thread that then runs its callback (libfuse's
// loops receive and process a request on one thread).
//
// FUSE_ALLOW_IDMAP (kernel 6.12) lets an idmapped mount be made of a
// stablefs mount (mount_setattr(2) with MOUNT_ATTR_IDMAP; containers'
// volumes, systemd-homed). The kernel accepts it only from a filesystem
// mounted with default_permissions, which stablefs always is (it fails the
// connection otherwise), since the permission checks must be its own: it
// alone knows the mount's idmap. For the same reason it then sends the
// caller's ids only in the requests that create an inode, mapped through
// the idmap; every other request carries FUSE_INVALID_UIDGID, on plain
// mounts too (fs/request_caller.h finds the ids where they are needed).
// The flag is bit 40, in the INIT reply's flags2, read by the kernel only
// when the reply also has FUSE_INIT_EXT.
//
// FUSE_TMPFILE (O_TMPFILE, kernel 6.1) is unknown to libfuse 3.14, which
// would answer ENOSYS, and the kernel would then refuse every O_TMPFILE
// with EOPNOTSUPP. Its request and reply are CREATE's to the byte (struct
// fuse_create_in and a name, the VFS's "/"; fuse_entry_out and
// fuse_open_out), so the hook hands it to libfuse as a CREATE and notes
// it; op_create asks creating_tmpfile() and makes a nameless inode.
//
// FUSE_STATX (kernel 6.6) is how the kernel learns a birth time: it asks
// when statx(2) wants STATX_BTIME, and after one ENOSYS (libfuse 3.14's
// answer) never again. It has no libfuse counterpart, so the hook answers
// it itself, on the thread that read it, from the attributes the source
// set_statx_source installs gives, then reads the next request for
// libfuse. Without a source it is left to libfuse (ENOSYS).
#pragma once

#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <cstdint>
#include <functional>

namespace stablefs {

// Installs the hooks. Call after fuse_session_mount, before the loop. 0 or
// a negative errno (the session then keeps libfuse's own I/O).
// `allow_idmap`: whether to take FUSE_ALLOW_IDMAP when the kernel offers
// it. Not under allow_root, which libfuse enforces by each request's uid
// (and would refuse every request that carries none, root's too).
int install_kernel_channel(fuse_session* se, bool allow_idmap);

// True once the kernel accepted FUSE_HANDLE_KILLPRIV_V2 for this mount:
// from then on the filesystem drops privileges on write itself.
bool killpriv_v2_active();

// For the WRITE of `ino` that this thread is handling: whether the kernel
// asked to drop setuid/setgid (FUSE_WRITE_KILL_SUIDGID). When the thread's
// last request is not that WRITE (which libfuse's loops never do), true:
// a privilege kept by mistake is worse than one dropped by mistake.
bool write_kills_suidgid(uint64_t ino);

// For the CREATE in `parent` that this thread is handling: whether the
// kernel sent it as FUSE_TMPFILE.
bool creating_tmpfile(uint64_t parent);

// What a FUSE_STATX reply says of node `nodeid`: 0 and the attributes
// (with the birth time) and how long the kernel may keep them, or an errno.
struct StatxAttrs {
  int error = 0;
  struct stat st {};
  struct timespec btime {};
  double timeout = 0;
};
using StatxSource = std::function<StatxAttrs(uint64_t nodeid)>;
// Call before the loop starts; the source must not throw.
void set_statx_source(StatxSource source);

}  // namespace stablefs
