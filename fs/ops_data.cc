// File data: open/create, read/write, flush/release/fsync, fallocate,
// SEEK_DATA/SEEK_HOLE and copy_file_range. The engine keys everything on
// the inode; a file handle (fi->fh) carries only what belongs to one open
// file description: its place in the file's writeback errors.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "fs/kernel_channel.h"
#include "fs/request.h"
#include "fs/request_caller.h"

namespace stablefs {
namespace {

// The kernel's page cache stays valid across opens: every write reaches
// the image through this daemon, so nothing can change the file behind
// the kernel's back, and dropping the cache on each open would only cost
// re-reads (and break the point of mmap). Except under strictatime: a
// read served from the kernel's cache never reaches the daemon, which
// alone keeps atime under FUSE, so each open starts from an empty cache.
void set_open_flags(fuse_req_t req, fuse_file_info* fi) {
  fi->keep_cache = mount_of(req).options().atime != AtimeMode::kStrict;
  fi->direct_io = 0;
}

// A new description, held by the mount before the reply can reach the
// kernel (which may send RELEASE on another thread right after it).
OpenFile* new_open_file(MountContext& m, uint64_t ino, fuse_file_info* fi) {
  auto f = std::make_unique<OpenFile>();
  f->write_error_cursor = m.fs().sample_write_errors(ino);
  OpenFile* p = f.get();
  fi->fh = reinterpret_cast<uint64_t>(p);
  m.adopt_open_file(std::move(f));
  return p;
}

// The description's error cursor; null for a request without one.
uint64_t* write_error_cursor(const fuse_file_info* fi) {
  if (fi == nullptr || fi->fh == 0) return nullptr;
  return &reinterpret_cast<OpenFile*>(fi->fh)->write_error_cursor;
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  guarded(req, RequestOp::kOpen, [&] {
    Status s = mount_of(req).fs().open(ino, fi->flags);
    if (!s.ok()) return reply_status(req, s);
    set_open_flags(req, fi);
    OpenFile* f = new_open_file(mount_of(req), ino, fi);
    // Undelivered (interrupted): no RELEASE will come for it.
    if (fuse_reply_open(req, fi) != 0) mount_of(req).release_open_file(f);
  });
}

// create is mknod + open of a regular file. The new inode's reference is
// the kernel's only if the reply arrives, so any failure after mknod
// drops it again.
// Also O_TMPFILE (fs/kernel_channel.h): the same reply for an inode
// without a name, which O_EXCL keeps from ever getting one.
void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
               fuse_file_info* fi) {
  guarded(req, RequestOp::kCreate, [&] {
    MountContext& m = mount_of(req);
    auto r = creating_tmpfile(parent)
                 ? m.fs().tmpfile(parent, mode, !(fi->flags & O_EXCL), caller_creds(req))
                 : m.fs().mknod(parent, name, S_IFREG | (mode & ~S_IFMT), 0, caller_creds(req));
    if (!r.ok()) return (void)reply_error(req, r.error());
    const Attr a = *r;
    Status s = m.fs().open(a.ino, fi->flags);
    if (!s.ok()) {
      drop_references(m.fs(), a.ino, 1);
      return reply_status(req, s);
    }
    set_open_flags(req, fi);
    fuse_entry_param e = entry_param(m, a);
    OpenFile* f = new_open_file(m, a.ino, fi);
    if (fuse_reply_create(req, &e, fi) != 0) {
      drop_references(m.fs(), a.ino, 1);
      m.release_open_file(f);
    }
  });
}

// One buffer per loop thread, grown to the largest read seen (max_read is
// 1 MiB): the read path allocates nothing in the steady state.
std::vector<char>& read_buffer(size_t size) {
  thread_local std::vector<char> buf;
  if (buf.size() < size) buf.resize(size);
  return buf;
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* /*fi*/) {
  guarded(req, RequestOp::kRead, [&] {
    if (off < 0) return (void)fuse_reply_err(req, EINVAL);
    std::vector<char>& buf = read_buffer(size);
    auto r = mount_of(req).fs().read(ino, uint64_t(off), size, buf.data());
    if (r.ok()) fuse_reply_buf(req, buf.data(), *r);
    else reply_error(req, r.error());
  });
}

// kill_privileges, then, when it dropped something, the kernel's cached
// attributes go: no reply of ours carries the new mode, and a statx that
// asks only for the mode (stat -c %A) would be answered from the cache.
Status drop_privileges(MountContext& m, fuse_ino_t ino, PrivilegeCaller& caller) {
  auto dropped = m.fs().kill_privileges(ino, caller);
  if (!dropped.ok()) return Error{dropped.error()};
  if (*dropped) m.invalidate_attrs(ino);
  return Status::Ok();
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off,
              fuse_file_info* fi) {
  guarded(req, RequestOp::kWrite, [&] {
    if (off < 0) return (void)fuse_reply_err(req, EINVAL);
    MountContext& m = mount_of(req);
    // Under KILLPRIV_V2 the kernel no longer drops privileges before a
    // write(2) (and no longer asks GETXATTR security.capability first):
    // that is ours. Page writeback (mmap, writeback_cache) is not a
    // write(2) and drops nothing, as in the VFS.
    if (killpriv_v2_active() && !(fi && fi->writepage)) {
      RequestCaller caller(req, !write_kills_suidgid(ino));
      if (Status s = drop_privileges(m, ino, caller); !s.ok())
        return (void)reply_error(req, s.error());
    }
    m.note_data_written(ino);
    auto r = m.fs().write(ino, uint64_t(off), data, size);
    if (r.ok()) fuse_reply_write(req, *r);
    else reply_error(req, r.error());
  });
}

// flush runs on every close(): it is where a write error recorded since
// the last flush/fsync reaches the application.
void op_flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  guarded(req, RequestOp::kFlush, [&] {
    reply_status(req, mount_of(req).fs().flush(ino, write_error_cursor(fi)));
  });
}

void op_release(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  guarded(req, RequestOp::kRelease, [&] {
    mount_of(req).release_open_file(reinterpret_cast<OpenFile*>(fi->fh));
    fuse_reply_err(req, 0);
  });
}

void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  guarded(req, RequestOp::kFsync, [&] {
    reply_status(req, mount_of(req).fs().fsync(ino, datasync != 0, write_error_cursor(fi)));
  });
}

// mode is passed through: KEEP_SIZE, PUNCH_HOLE and ZERO_RANGE are the
// engine's to accept or refuse with EOPNOTSUPP.
void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                  fuse_file_info* /*fi*/) {
  guarded(req, RequestOp::kFallocate, [&] {
    if (off < 0 || len <= 0) return (void)fuse_reply_err(req, EINVAL);
    MountContext& m = mount_of(req);
    // The kernel's fallocate calls file_modified, whose privilege drop
    // fuse_setattr leaves to the filesystem under KILLPRIV_V2 and sends
    // none of (no FUSE_WRITE_KILL_SUIDGID here): the caller's capability
    // comes from /proc.
    if (killpriv_v2_active()) {
      RequestCaller caller(req);
      if (Status s = drop_privileges(m, ino, caller); !s.ok()) return (void)reply_error(req, s.error());
    }
    m.note_data_written(ino);  // zeroed edges are written back like data
    reply_status(req, m.fs().fallocate(ino, mode, uint64_t(off), uint64_t(len)));
  });
}

// The kernel answers SEEK_SET/CUR/END itself; only SEEK_DATA and
// SEEK_HOLE need the extent map.
void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* /*fi*/) {
  guarded(req, RequestOp::kLseek, [&] {
    if (whence != SEEK_DATA && whence != SEEK_HOLE) return (void)fuse_reply_err(req, EINVAL);
    if (off < 0) return (void)fuse_reply_err(req, ENXIO);
    auto r = mount_of(req).fs().seek_data_hole(ino, uint64_t(off), whence);
    if (r.ok()) fuse_reply_lseek(req, off_t(*r));
    else reply_error(req, r.error());
  });
}

void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info* /*fi_in*/,
                        fuse_ino_t ino_out, off_t off_out, fuse_file_info* /*fi_out*/, size_t len,
                        int flags) {
  guarded(req, RequestOp::kCopyFileRange, [&] {
    if (flags != 0 || off_in < 0 || off_out < 0) return (void)fuse_reply_err(req, EINVAL);
    MountContext& m = mount_of(req);
    m.note_data_written(ino_out);
    auto r = m.fs().copy_file_range(ino_in, uint64_t(off_in), ino_out, uint64_t(off_out), len);
    if (r.ok()) fuse_reply_write(req, *r);
    else reply_error(req, r.error());
  });
}

}  // namespace

void add_data_ops(fuse_lowlevel_ops& ops) {
  ops.open = op_open;
  ops.create = op_create;
  ops.read = op_read;
  ops.write = op_write;
  ops.flush = op_flush;
  ops.release = op_release;
  ops.fsync = op_fsync;
  ops.fallocate = op_fallocate;
  ops.lseek = op_lseek;
  ops.copy_file_range = op_copy_file_range;
}

}  // namespace stablefs
