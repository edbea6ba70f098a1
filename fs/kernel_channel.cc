#include "fs/kernel_channel.h"

#include <linux/fuse.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <utility>

namespace stablefs {
namespace {

// What the last request read on this thread said.
struct LastRequest {
  uint32_t opcode = 0;
  uint64_t nodeid = 0;
  uint32_t write_flags = 0;
  bool tmpfile = false;  // a FUSE_TMPFILE handed to libfuse as a CREATE
};
thread_local LastRequest last_request;

// The INIT exchange: the request's unique (0 once the reply went out) and
// what the kernel offered of the flags we add to libfuse's reply.
std::atomic<uint64_t> init_unique{0};
std::atomic<bool> init_offers_killpriv_v2{false};
std::atomic<bool> init_offers_idmap{false};
std::atomic<bool> killpriv_v2{false};
bool take_idmap = false;  // set before the loop threads start

// Protocol 7.40's FUSE_ALLOW_IDMAP, as a flags2 bit (flag bits from 32 on
// travel there, shifted down by 32).
constexpr uint32_t kAllowIdmapFlags2 = uint32_t((1ULL << 40) >> 32);

// FUSE protocol 7.39's STATX, newer than Debian 12's <linux/fuse.h>
// (7.38), spelled as include/uapi/linux/fuse.h spells it.
constexpr uint32_t kFuseStatx = 52;
struct SxTime {
  int64_t tv_sec;
  uint32_t tv_nsec;
  int32_t reserved;
};
struct FuseStatx {
  uint32_t mask, blksize;
  uint64_t attributes;
  uint32_t nlink, uid, gid;
  uint16_t mode, spare0[1];
  uint64_t ino, size, blocks, attributes_mask;
  SxTime atime, btime, ctime, mtime;
  uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
  uint64_t spare2[14];
};
struct FuseStatxOut {
  uint64_t attr_valid;
  uint32_t attr_valid_nsec, flags;
  uint64_t spare[2];
  FuseStatx stat;
};
static_assert(sizeof(FuseStatx) == 256 && sizeof(FuseStatxOut) == 288, "FUSE ABI");

StatxSource statx_source;  // set before the loop threads start

SxTime sx_time(struct timespec t) { return SxTime{t.tv_sec, uint32_t(t.tv_nsec), 0}; }

// Writes the reply to STATX request `unique` for node `nodeid`.
void answer_statx(int fd, uint64_t unique, uint64_t nodeid) {
  StatxAttrs a = statx_source(nodeid);
  FuseStatxOut out{};
  fuse_out_header h{};
  h.unique = unique;
  h.len = sizeof h;
  if (a.error != 0) {
    h.error = -a.error;
  } else {
    h.len += sizeof out;
    double whole = std::floor(a.timeout);
    out.attr_valid = uint64_t(whole);
    out.attr_valid_nsec = uint32_t((a.timeout - whole) * 1e9);
    FuseStatx& s = out.stat;
    s.mask = STATX_BASIC_STATS | STATX_BTIME;
    s.blksize = uint32_t(a.st.st_blksize);
    s.nlink = uint32_t(a.st.st_nlink);
    s.uid = a.st.st_uid;
    s.gid = a.st.st_gid;
    s.mode = uint16_t(a.st.st_mode);
    s.ino = a.st.st_ino;
    s.size = uint64_t(a.st.st_size);
    s.blocks = uint64_t(a.st.st_blocks);
    s.atime = sx_time(a.st.st_atim);
    s.mtime = sx_time(a.st.st_mtim);
    s.ctime = sx_time(a.st.st_ctim);
    s.btime = sx_time(a.btime);
    s.rdev_major = major(a.st.st_rdev);
    s.rdev_minor = minor(a.st.st_rdev);
  }
  iovec iov[2] = {{&h, sizeof h}, {&out, sizeof out}};
  // A failed write means the request is gone (interrupted, or the
  // connection): nothing is waiting for the answer.
  (void)::writev(fd, iov, a.error != 0 ? 1 : 2);
}

template <class T>
bool read_struct(const void* buf, size_t len, size_t off, T* out) {
  if (len < off + sizeof(T)) return false;
  std::memcpy(out, static_cast<const char*>(buf) + off, sizeof(T));
  return true;
}

ssize_t channel_read(int fd, void* buf, size_t len, void* /*userdata*/) {
  ssize_t n;
  fuse_in_header in;
  for (;;) {
    n = ::read(fd, buf, len);
    if (n <= 0 || !read_struct(buf, size_t(n), 0, &in)) return n;
    if (in.opcode != kFuseStatx || !statx_source) break;
    // libfuse's loop enables cancellation only while it receives (it
    // cancels its workers when the session ends): answering here runs the
    // engine and writes a log line, which a cancellation must not cut
    // short with a lock held (a worker cancelled in fprintf left stderr's
    // lock taken and every other thread waiting for it).
    int cancel_state;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    answer_statx(fd, in.unique, in.nodeid);
    pthread_setcancelstate(cancel_state, nullptr);
  }
  last_request = LastRequest{in.opcode, in.nodeid, 0};
  if (in.opcode == FUSE_WRITE) {
    fuse_write_in w;
    if (read_struct(buf, size_t(n), sizeof in, &w)) last_request.write_flags = w.write_flags;
  } else if (in.opcode == FUSE_TMPFILE) {
    in.opcode = FUSE_CREATE;
    std::memcpy(buf, &in, sizeof in);
    last_request.opcode = FUSE_CREATE;
    last_request.tmpfile = true;
  } else if (in.opcode == FUSE_INIT) {
    fuse_init_in init;
    bool whole = read_struct(buf, size_t(n), sizeof in, &init);
    init_offers_killpriv_v2 = whole && (init.flags & FUSE_HANDLE_KILLPRIV_V2) != 0;
    init_offers_idmap =
        whole && (init.flags & FUSE_INIT_EXT) != 0 && (init.flags2 & kAllowIdmapFlags2) != 0;
    init_unique = in.unique;
  }
  return n;
}

// Adds what the kernel offered of our flags to libfuse's INIT reply `init`
// of `len` bytes (libfuse built it on its stack for this one writev).
void amend_init_reply(fuse_init_out* init, size_t len) {
  constexpr size_t kFlagsEnd = offsetof(fuse_init_out, flags) + sizeof(uint32_t);
  constexpr size_t kFlags2End = offsetof(fuse_init_out, flags2) + sizeof(uint32_t);
  if (len >= kFlagsEnd && init_offers_killpriv_v2) {
    init->flags |= FUSE_HANDLE_KILLPRIV_V2;
    killpriv_v2 = true;
  }
  if (len >= kFlags2End && init_offers_idmap && take_idmap) {
    init->flags |= FUSE_INIT_EXT;
    init->flags2 |= kAllowIdmapFlags2;
  }
}

ssize_t channel_writev(int fd, struct iovec* iov, int count, void* /*userdata*/) {
  uint64_t unique = init_unique.load();
  if (unique != 0 && count >= 2 && iov[0].iov_len == sizeof(fuse_out_header)) {
    auto* out = static_cast<fuse_out_header*>(iov[0].iov_base);
    if (out->unique == unique) {
      init_unique = 0;
      if (out->error == 0)
        amend_init_reply(static_cast<fuse_init_out*>(iov[1].iov_base), iov[1].iov_len);
    }
  }
  return ::writev(fd, iov, count);
}

}  // namespace

int install_kernel_channel(fuse_session* se, bool allow_idmap) {
  take_idmap = allow_idmap;
  fuse_custom_io io{};
  io.read = channel_read;
  io.writev = channel_writev;
  int fd = fuse_session_fd(se);
  if (fd < 0) return -EBADF;
  return fuse_session_custom_io(se, &io, fd);
}

bool killpriv_v2_active() { return killpriv_v2.load(std::memory_order_relaxed); }

void set_statx_source(StatxSource source) { statx_source = std::move(source); }

bool creating_tmpfile(uint64_t parent) {
  const LastRequest& r = last_request;
  return r.tmpfile && r.opcode == FUSE_CREATE && r.nodeid == parent;
}

bool write_kills_suidgid(uint64_t ino) {
  const LastRequest& r = last_request;
  if (r.opcode != FUSE_WRITE || r.nodeid != ino) return true;
  return (r.write_flags & FUSE_WRITE_KILL_SUIDGID) != 0;
}

}  // namespace stablefs
