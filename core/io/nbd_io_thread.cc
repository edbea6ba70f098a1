#include "core/io/nbd_io_thread.h"

#include <libnbd.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/base/format.h"
#include "core/base/log.h"

namespace stablefs {

using Clock = std::chrono::steady_clock;

static_assert(NbdDevice::kBounceBytes == IoRequest::kMaxSegments * kBlockSize,
              "a bounce buffer holds a request of page-sized segments");

namespace {

// Errnos that mean the connection is gone, not that the server refused
// one command. ENOTCONN is what libnbd gives commands it aborts; no NBD
// server sends it. A server sends ESHUTDOWN only when it is going away.
bool is_connection_errno(int e) {
  return e == ENOTCONN || e == ESHUTDOWN || e == ECONNRESET || e == EPIPE || e == ETIMEDOUT;
}

// The errno a command's failure reaches the caller as: a server's own
// error as it is, a broken connection as EIO, since to the engine it is a
// device error like any other.
int caller_errno(int nbd_error) {
  if (is_connection_errno(nbd_error) || nbd_error <= 0) return EIO;
  return nbd_error;
}

// Copies a bounced read into the request's segments.
void scatter(IoRequest& r, const uint8_t* from) {
  for (int i = 0; i < r.iov_count; i++) {
    std::memcpy(r.iov[i].iov_base, from, r.iov[i].iov_len);
    from += r.iov[i].iov_len;
  }
}

}  // namespace

int last_nbd_errno() {
  int e = nbd_get_errno();
  return e > 0 ? e : EIO;
}

void NbdDevice::IoThread::run() {
  for (;;) {
    bool stopping = take_incoming();
    issue_ready();
    check_connection();  // an issue may have found the connection dead
    if (stopping && pending_head_ == nullptr && in_flight_ == 0) return;
    if (poll_once() < 0) {
      SFS_LOG("NBD %s: poll failed: %s; the device fails every request", dev_.cfg_.uri.c_str(),
              std::strerror(errno));
      lost_ = true;
      // Nobody reads the sockets from now on, so no late reply can land in
      // a buffer whose request check_connection is about to fail.
      shut_down_sockets();
    }
    check_connection();
    check_stall();
  }
}

// Moves submitted groups to the pending list. Returns whether the device is
// closing.
bool NbdDevice::IoThread::take_incoming() {
  uint64_t ignored;
  (void)!::read(dev_.wake_fd_, &ignored, sizeof(ignored));  // nonblocking: resets the count
  std::lock_guard lk(dev_.mu_);
  if (dev_.incoming_head_ != nullptr) {
    if (pending_tail_ != nullptr) {
      pending_tail_->next = dev_.incoming_head_;
    } else {
      pending_head_ = dev_.incoming_head_;
      cur_req_ = 0, cur_seg_ = 0, cur_seg_off_ = 0, cur_req_off_ = 0;
    }
    pending_tail_ = dev_.incoming_tail_;
    dev_.incoming_head_ = dev_.incoming_tail_ = nullptr;
  }
  return dev_.stopping_;
}

void NbdDevice::IoThread::issue_ready() {
  if (lost_) {
    fail_all_pending();
    return;
  }
  while (pending_head_ != nullptr && issue_from(*pending_head_)) {
  }
}

bool NbdDevice::IoThread::issue_from(Group& g) {
  if (g.is_flush) {
    if (free_count_ == 0) return false;
    issue(g, g.requests[0], 0, 0, nullptr, false, true);
    if (lost_) return false;  // check_connection fails and pops the group
    pop_head();
    return true;
  }
  while (cur_req_ < g.requests.size()) {
    IoRequest* r = g.requests[cur_req_];
    if (r->result != 0 && cur_req_off_ == 0) {  // refused by validation: never sent
      cur_req_++;
      continue;
    }
    if (r->op == IoOp::kDiscard) {
      if (!issue_discard(g, r)) return false;
      if (lost_) return false;
      continue;
    }
    if (cur_req_off_ == 0) {
      bool handled = false;
      if (!issue_bounced(g, r, &handled)) return false;
      if (lost_) return false;  // check_connection fails and pops the group
      if (handled) {
        cur_req_++;
        continue;
      }
    }
    const iovec& seg = r->iov[cur_seg_];
    uint64_t length = std::min<uint64_t>(seg.iov_len - cur_seg_off_, dev_.max_command_bytes_);
    uint64_t offset = r->blocknr * kBlockSize + cur_req_off_;
    bool write = r->op == IoOp::kWrite;
    if (free_count_ == 0 || conflicts(offset, length, write)) return false;
    issue(g, r, offset, length, static_cast<uint8_t*>(seg.iov_base) + cur_seg_off_, write, false);
    if (lost_) return false;  // check_connection fails and pops the group
    cur_seg_off_ += length;
    cur_req_off_ += length;
    if (cur_seg_off_ == seg.iov_len) {
      cur_seg_off_ = 0;
      if (++cur_seg_ == r->iov_count) {
        cur_seg_ = 0;
        cur_req_off_ = 0;
        cur_req_++;
      }
    }
  }
  pop_head();
  return true;
}

bool NbdDevice::IoThread::issue_bounced(Group& g, IoRequest* r, bool* handled) {
  const uint64_t bytes = r->bytes();
  if (r->iov_count < 2 || bytes > kBounceBytes || bytes > dev_.max_command_bytes_) return true;
  const uint64_t offset = r->blocknr * kBlockSize;
  const bool write = r->op == IoOp::kWrite;
  if (free_count_ == 0 || free_bounce_count_ == 0 || conflicts(offset, bytes, write)) return false;
  int b = free_bounce_[--free_bounce_count_];
  uint8_t* buf = bounce_[b].get();
  if (write) {
    uint8_t* at = buf;
    for (int i = 0; i < r->iov_count; i++) {
      std::memcpy(at, r->iov[i].iov_base, r->iov[i].iov_len);
      at += r->iov[i].iov_len;
    }
  }
  issue(g, r, offset, bytes, buf, write, false, b);
  *handled = true;
  return true;
}

// NBD_CMD_TRIM in commands of at most max_command_bytes_ (the server's
// maximum applies to trims too, for some servers), each ordered against
// overlapping commands like a write. A server without trim gets nothing.
bool NbdDevice::IoThread::issue_discard(Group& g, IoRequest* r) {
  const uint64_t total = r->discard_blocks * kBlockSize;
  while (dev_.trim_ && cur_req_off_ < total) {
    uint64_t length = std::min<uint64_t>(total - cur_req_off_, dev_.max_command_bytes_);
    uint64_t offset = r->blocknr * kBlockSize + cur_req_off_;
    if (free_count_ == 0 || conflicts(offset, length, true)) return false;
    issue(g, r, offset, length, nullptr, true, false);
    if (lost_) return false;
    cur_req_off_ += length;
  }
  cur_req_off_ = 0;
  cur_req_++;
  return true;
}

bool NbdDevice::IoThread::conflicts(uint64_t offset, uint64_t length, bool write) const {
  for (const Command& c : cmds_) {
    if (!c.busy || c.length == 0 || !(write || c.write)) continue;
    if (offset < c.offset + c.length && c.offset < offset + length) return true;
  }
  return false;
}

void NbdDevice::IoThread::issue(Group& g, IoRequest* r, uint64_t offset, uint64_t length,
                                void* buf, bool write, bool flush, int bounce) {
  Command& c = cmds_[free_[--free_count_]];
  c.bounce = bounce;
  c.group = &g;
  c.req = r;
  c.offset = offset;
  c.length = length;
  c.write = write;
  c.busy = true;
  c.issued = Clock::now();
  g.outstanding++;
  in_flight_++;
  int seen = dev_.max_in_flight_seen_.load(std::memory_order_relaxed);
  if (in_flight_ > seen) dev_.max_in_flight_seen_.store(in_flight_, std::memory_order_relaxed);
  dev_.commands_issued_.fetch_add(1, std::memory_order_relaxed);

  nbd_completion_callback cb = {.callback = &IoThread::on_complete, .user_data = &c,
                                .free = nullptr};
  // With multi-conn a flush on any connection covers the writes completed
  // on all of them (the server promised so by advertising it).
  nbd_handle* h = hs_[next_handle_++ % hs_.size()];
  int64_t cookie;
  if (flush) cookie = nbd_aio_flush(h, cb, 0);
  else if (r->op == IoOp::kDiscard) cookie = nbd_aio_trim(h, length, offset, cb, 0);
  else if (write)
    cookie = nbd_aio_pwrite(h, buf, length, offset, cb,
                            r->fua && dev_.fua_ ? LIBNBD_CMD_FLAG_FUA : 0);
  else cookie = nbd_aio_pread(h, buf, length, offset, cb, 0);
  // -1 means the command was never queued and its callback will not run
  // (unless libnbd already retired it while failing the connection).
  if (cookie < 0 && c.busy) {
    if (nbd_aio_is_dead(h) || nbd_aio_is_closed(h)) {
      if (nbd_get_error() != nullptr) failure_ = nbd_get_error();
      lost_ = true;  // the run loop's check_connection fails the rest
      finish(c, EIO);
    } else {
      SFS_LOG("NBD %s: cannot issue a command: %s", dev_.cfg_.uri.c_str(), nbd_get_error());
      finish(c, last_nbd_errno());
    }
  }
}

// libnbd's completion callback, on the I/O thread inside a notify call.
// Returns 1 so libnbd retires the command itself.
int NbdDevice::IoThread::on_complete(void* user_data, int* error) {
  Command& c = *static_cast<Command*>(user_data);
  c.io->finish(c, *error);
  return 1;
}

void NbdDevice::IoThread::finish(Command& c, int error) {
  if (!c.busy) return;
  // libnbd fails the commands in flight with the connection's errno when
  // it dies. Mark the device lost before any submitter is woken, so none
  // sees its EIO while connection_lost() still says otherwise.
  if (is_connection_errno(error)) {
    lost_ = true;
    dev_.lost_.store(true, std::memory_order_release);
  }
  if (error != 0 && c.req->result == 0) c.req->result = caller_errno(error);
  if (c.bounce >= 0) {
    if (error == 0 && !c.write) scatter(*c.req, bounce_[c.bounce].get());
    free_bounce_[free_bounce_count_++] = c.bounce;
    c.bounce = -1;
  }
  c.busy = false;
  Group& g = *c.group;
  c.group = nullptr;
  c.req = nullptr;
  free_[free_count_++] = int(&c - cmds_.data());
  in_flight_--;
  if (--g.outstanding == 0 && g.fully_issued) complete_group(g);
}

void NbdDevice::IoThread::pop_head() {
  Group& g = *pending_head_;
  pending_head_ = g.next;
  if (pending_head_ == nullptr) pending_tail_ = nullptr;
  cur_req_ = 0, cur_seg_ = 0, cur_seg_off_ = 0, cur_req_off_ = 0;
  g.fully_issued = true;
  if (g.outstanding == 0) complete_group(g);
}

// After this the submitter may return and `g` is gone. The notify is made
// under mu_ because the submitter can only see `done` and destroy `g` (and
// its condition variable) after we release it.
void NbdDevice::IoThread::complete_group(Group& g) {
  std::lock_guard lk(dev_.mu_);
  g.done = true;
  g.cv.notify_one();
}

int NbdDevice::IoThread::poll_once() {
  // fds[0] is the wake eventfd, fds[1 + i] connection i (fd -1, ignored by
  // poll, once the device is lost).
  std::array<pollfd, 1 + kMaxConnections> fds{};
  fds[0] = {dev_.wake_fd_, POLLIN, 0};
  const int nfds = 1 + int(hs_.size());
  for (size_t i = 0; i < hs_.size(); i++) {
    int fd = lost_ ? -1 : nbd_aio_get_fd(hs_[i]);
    unsigned dir = fd >= 0 ? nbd_aio_get_direction(hs_[i]) : 0;
    short events = 0;
    if (dir & LIBNBD_AIO_DIRECTION_READ) events |= POLLIN;
    if (dir & LIBNBD_AIO_DIRECTION_WRITE) events |= POLLOUT;
    fds[1 + i] = {fd, events, 0};
  }
  int timeout_ms = -1;
  if (in_flight_ > 0) {
    // Wake in time to notice the oldest command passing its deadline.
    Clock::time_point oldest = Clock::time_point::max();
    for (const Command& c : cmds_)
      if (c.busy) oldest = std::min(oldest, c.issued);
    auto deadline = oldest + std::chrono::milliseconds(dev_.cfg_.io_timeout_ms);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    timeout_ms = int(std::clamp<int64_t>(left.count() + 1, 0, 60000));
  }
  int n = ::poll(fds.data(), nfds_t(nfds), timeout_ms);
  if (n < 0) return errno == EINTR ? 0 : -1;
  for (size_t i = 0; i < hs_.size(); i++) {
    short revents = fds[1 + i].revents;
    if (fds[1 + i].fd < 0 || revents == 0) continue;
    // Readable, or hung up / failed: reading is how libnbd learns of EOF.
    int rc = 0;
    if (revents & (POLLIN | POLLHUP | POLLERR)) rc = nbd_aio_notify_read(hs_[i]);
    else if (revents & POLLOUT) rc = nbd_aio_notify_write(hs_[i]);
    // libnbd's message is per thread and per call: keep it for the log.
    if (rc < 0 && nbd_get_error() != nullptr) failure_ = nbd_get_error();
  }
  return 0;
}

// A command past io_timeout_ms: the server stalled. Shutting the socket
// down makes libnbd see EOF and fail every command in flight through its
// callbacks, so no reply can land in a buffer after its caller was told
// the request failed.
void NbdDevice::IoThread::check_stall() {
  if (lost_ || in_flight_ == 0 || stall_reported_) return;
  auto now = Clock::now();
  for (const Command& c : cmds_) {
    if (!c.busy || now - c.issued < std::chrono::milliseconds(dev_.cfg_.io_timeout_ms)) continue;
    SFS_LOG("NBD %s: the server has not answered a command for %u ms: dropping the connection; "
            "every further I/O fails with EIO",
            dev_.cfg_.uri.c_str(), dev_.cfg_.io_timeout_ms);
    stall_reported_ = true;
    failure_ = "dropped by us: the server stalled";
    shut_down_sockets();
    return;
  }
}

void NbdDevice::IoThread::shut_down_sockets() {
  for (nbd_handle* h : hs_)
    if (int fd = nbd_aio_get_fd(h); fd >= 0) ::shutdown(fd, SHUT_RDWR);
}

bool NbdDevice::IoThread::any_connection_dead() const {
  for (nbd_handle* h : hs_)
    if (nbd_aio_is_dead(h) || nbd_aio_is_closed(h)) return true;
  return false;
}

// One connection lost is the device lost: what was in flight on it may or
// may not have reached the server, so nothing later may be trusted to
// land after it (and a flush on another connection could not tell).
void NbdDevice::IoThread::check_connection() {
  const bool dead = any_connection_dead();
  if (!lost_ && !dead) return;
  // Lost by our own verdict (a stall, ESHUTDOWN, a poll failure) or on one
  // connection of several, while libnbd still holds sockets: nothing will
  // read them again.
  shut_down_sockets();
  dev_.lost_.store(true, std::memory_order_release);
  if (!loss_logged_) {
    loss_logged_ = true;
    SFS_LOG("NBD %s: connection to the server lost (%s); no reconnect: every further I/O "
            "fails with EIO",
            dev_.cfg_.uri.c_str(), failure_.empty() ? "closed by the server" : failure_.c_str());
  }
  lost_ = true;
  // libnbd fails the commands in flight through their callbacks when the
  // connection dies; any it did not is failed here. Nothing reads the
  // socket any more, so no buffer is written after this.
  for (Command& c : cmds_)
    if (c.busy) finish(c, EIO);
  fail_all_pending();
}

void NbdDevice::IoThread::fail_all_pending() {
  while (pending_head_ != nullptr) {
    Group& g = *pending_head_;
    // Requests not yet (fully) issued fail; one partly issued already has
    // its commands in flight or failed, and ends with EIO too.
    for (size_t i = cur_req_; i < g.requests.size(); i++)
      if (g.requests[i]->result == 0) g.requests[i]->result = EIO;
    pop_head();
  }
}

}  // namespace stablefs
