#include "fs/kernel_channel.h"

#include <linux/fuse.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>

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

// The INIT exchange: the request's unique and whether the kernel offered
// KILLPRIV_V2; 0 once the reply went out.
std::atomic<uint64_t> init_unique{0};
std::atomic<bool> init_offers_killpriv_v2{false};
std::atomic<bool> killpriv_v2{false};

template <class T>
bool read_struct(const void* buf, size_t len, size_t off, T* out) {
  if (len < off + sizeof(T)) return false;
  std::memcpy(out, static_cast<const char*>(buf) + off, sizeof(T));
  return true;
}

ssize_t channel_read(int fd, void* buf, size_t len, void* /*userdata*/) {
  ssize_t n = ::read(fd, buf, len);
  fuse_in_header in;
  if (n <= 0 || !read_struct(buf, size_t(n), 0, &in)) return n;
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
    bool offered = read_struct(buf, size_t(n), sizeof in, &init) &&
                   (init.flags & FUSE_HANDLE_KILLPRIV_V2) != 0;
    init_offers_killpriv_v2 = offered;
    init_unique = in.unique;
  }
  return n;
}

ssize_t channel_writev(int fd, struct iovec* iov, int count, void* /*userdata*/) {
  uint64_t unique = init_unique.load();
  if (unique != 0 && count >= 2 && iov[0].iov_len == sizeof(fuse_out_header)) {
    auto* out = static_cast<fuse_out_header*>(iov[0].iov_base);
    constexpr size_t kFlagsEnd = offsetof(fuse_init_out, flags) + sizeof(uint32_t);
    if (out->unique == unique) {
      init_unique = 0;
      if (out->error == 0 && iov[1].iov_len >= kFlagsEnd && init_offers_killpriv_v2) {
        // libfuse built this reply on its stack for this one writev.
        auto* init = static_cast<fuse_init_out*>(iov[1].iov_base);
        init->flags |= FUSE_HANDLE_KILLPRIV_V2;
        killpriv_v2 = true;
      }
    }
  }
  return ::writev(fd, iov, count);
}

}  // namespace

int install_kernel_channel(fuse_session* se) {
  fuse_custom_io io{};
  io.read = channel_read;
  io.writev = channel_writev;
  int fd = fuse_session_fd(se);
  if (fd < 0) return -EBADF;
  return fuse_session_custom_io(se, &io, fd);
}

bool killpriv_v2_active() { return killpriv_v2.load(std::memory_order_relaxed); }

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
