#include "core/io/nbd_device.h"

#include <libnbd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/base/format.h"
#include "core/base/log.h"

namespace stablefs {

using Clock = std::chrono::steady_clock;

static_assert(NbdDevice::kBounceBytes == IoRequest::kMaxSegments * kBlockSize,
              "a bounce buffer holds a request of page-sized segments");

// A submitter's run of requests with no flush among them, or one lone
// flush. Lives on the submitter's stack until `done`.
struct NbdDevice::Group {
  std::span<IoRequest*> requests;
  bool is_flush = false;
  // I/O thread only.
  Group* next = nullptr;
  int outstanding = 0;  // commands issued and not yet completed
  bool fully_issued = false;
  // Under NbdDevice::mu_.
  bool done = false;
  std::condition_variable cv;
};

// One NBD command in flight: a slot of a fixed table, so issuing allocates
// nothing of ours (libnbd allocates its own command record).
struct NbdDevice::Command {
  IoThread* io = nullptr;
  Group* group = nullptr;
  IoRequest* req = nullptr;
  uint64_t offset = 0;
  uint64_t length = 0;  // 0 for a flush: it overlaps nothing
  bool write = false;
  bool busy = false;
  int bounce = -1;  // the bounce buffer a multi-segment request travels in
  Clock::time_point issued;
};

// Everything the I/O thread owns. Only that thread touches it.
class NbdDevice::IoThread {
 public:
  explicit IoThread(NbdDevice& dev) : dev_(dev), h_(dev.handle_) {
    for (int i = 0; i < kMaxInFlight; i++) {
      cmds_[i].io = this;
      free_[i] = i;
    }
    free_count_ = kMaxInFlight;
  }

  // Allocates the bounce buffers; false when memory is short (at open, so
  // the I/O path itself never allocates).
  bool allocate_bounce_buffers() {
    for (int i = 0; i < kBounceBuffers; i++) {
      bounce_[i].reset(static_cast<uint8_t*>(std::aligned_alloc(kBlockSize, kBounceBytes)));
      if (!bounce_[i]) return false;
      free_bounce_[i] = i;
    }
    free_bounce_count_ = kBounceBuffers;
    return true;
  }

  void run();

 private:
  bool take_incoming();
  void issue_ready();
  // Issues the head group's next commands; false when issuing must pause
  // (no free slot, or a conflict with a command in flight).
  bool issue_from(Group& g);
  // Issues request `r` as one command through a bounce buffer when it has
  // several segments that fit one; returns false when it must wait (no
  // slot, no bounce buffer, a conflict). Sets *handled when it applied.
  bool issue_bounced(Group& g, IoRequest* r, bool* handled);
  bool conflicts(uint64_t offset, uint64_t length, bool write) const;
  void issue(Group& g, IoRequest* r, uint64_t offset, uint64_t length, void* buf, bool write,
             bool flush, int bounce = -1);
  static int on_complete(void* user_data, int* error);
  void finish(Command& c, int error);
  void pop_head();
  void complete_group(Group& g);
  int poll_once();
  void check_stall();
  void check_connection();
  void fail_all_pending();

  NbdDevice& dev_;
  nbd_handle* const h_;
  std::array<Command, kMaxInFlight> cmds_{};
  std::array<int, kMaxInFlight> free_{};
  int free_count_ = 0;

  // NBD has no vectored I/O, and the engine's writeback sends up to 64
  // page-sized segments per request: as one command per segment that is
  // 4 KiB commands, a round trip each. A request whose segments fit
  // kBounceBytes instead travels as one command through a contiguous copy
  // (writes copied in at issue, from pages that stay stable until the
  // request completes; reads copied out at completion).
  struct FreeDeleter {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::array<std::unique_ptr<uint8_t, FreeDeleter>, kBounceBuffers> bounce_;
  std::array<int, kBounceBuffers> free_bounce_{};
  int free_bounce_count_ = 0;
  int in_flight_ = 0;
  bool lost_ = false;
  bool stall_reported_ = false;
  bool loss_logged_ = false;
  std::string failure_;  // libnbd's message for the call that broke the connection

  Group* pending_head_ = nullptr;
  Group* pending_tail_ = nullptr;
  // Where issuing stands in pending_head_: request, segment, byte offset in
  // the segment, byte offset in the request.
  size_t cur_req_ = 0;
  int cur_seg_ = 0;
  uint64_t cur_seg_off_ = 0;
  uint64_t cur_req_off_ = 0;
};

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

int last_nbd_errno() {
  int e = nbd_get_errno();
  return e > 0 ? e : EIO;
}

}  // namespace

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
      // Nobody reads the socket from now on, so no late reply can land in
      // a buffer whose request check_connection is about to fail.
      if (int fd = nbd_aio_get_fd(h_); fd >= 0) ::shutdown(fd, SHUT_RDWR);
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
  int64_t cookie;
  if (flush) cookie = nbd_aio_flush(h_, cb, 0);
  else if (write) cookie = nbd_aio_pwrite(h_, buf, length, offset, cb, 0);
  else cookie = nbd_aio_pread(h_, buf, length, offset, cb, 0);
  // -1 means the command was never queued and its callback will not run
  // (unless libnbd already retired it while failing the connection).
  if (cookie < 0 && c.busy) {
    if (nbd_aio_is_dead(h_) || nbd_aio_is_closed(h_)) {
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
  pollfd fds[2] = {{dev_.wake_fd_, POLLIN, 0}, {-1, 0, 0}};
  int nfds = 1;
  int fd = lost_ ? -1 : nbd_aio_get_fd(h_);
  if (fd >= 0) {
    unsigned dir = nbd_aio_get_direction(h_);
    short events = 0;
    if (dir & LIBNBD_AIO_DIRECTION_READ) events |= POLLIN;
    if (dir & LIBNBD_AIO_DIRECTION_WRITE) events |= POLLOUT;
    fds[1] = {fd, events, 0};
    nfds = 2;
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
  int n = ::poll(fds, nfds, timeout_ms);
  if (n < 0) return errno == EINTR ? 0 : -1;
  if (nfds == 2 && fds[1].revents != 0) {
    // Readable, or hung up / failed: reading is how libnbd learns of EOF.
    int rc = 0;
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) rc = nbd_aio_notify_read(h_);
    else if (fds[1].revents & POLLOUT) rc = nbd_aio_notify_write(h_);
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
    int fd = nbd_aio_get_fd(h_);
    if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
    return;
  }
}

void NbdDevice::IoThread::check_connection() {
  const bool dead = nbd_aio_is_dead(h_) || nbd_aio_is_closed(h_);
  if (!lost_ && !dead) return;
  // Lost by our own verdict (a stall, ESHUTDOWN, a poll failure) while
  // libnbd still holds a socket: nothing will read it again.
  if (!dead)
    if (int fd = nbd_aio_get_fd(h_); fd >= 0) ::shutdown(fd, SHUT_RDWR);
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

// ---- NbdDevice ----

namespace {

// Connects with a deadline: nbd_connect_uri would wait for ever on a
// server that holds the handshake (qemu-nbd with a client already on).
int connect_with_deadline(nbd_handle* h, const std::string& uri, uint32_t timeout_ms,
                          std::string* why) {
  if (nbd_aio_connect_uri(h, uri.c_str()) != 0) {
    *why = nbd_get_error();
    int e = nbd_get_errno();
    return e > 0 ? e : EINVAL;
  }
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (nbd_aio_is_connecting(h)) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      *why = "no NBD handshake within " + std::to_string(timeout_ms) +
             " ms (a server that serves one client at a time, such as qemu-nbd, holds a second "
             "client here while the export is in use)";
      return ETIMEDOUT;
    }
    if (nbd_poll(h, int(left)) < 0) {
      *why = std::string(nbd_get_error()) +
             " (during the handshake: a server that admits one client, such as nbdkit "
             "--filter=limit limit=1, drops the second one this way while the export is in use)";
      return last_nbd_errno();
    }
  }
  if (!nbd_aio_is_ready(h)) {
    const char* e = nbd_get_error();
    *why = e != nullptr ? e : "the server closed the connection during the handshake";
    int code = nbd_get_errno();
    return code > 0 ? code : ECONNREFUSED;
  }
  return 0;
}

struct HandleCloser {
  void operator()(nbd_handle* h) const { nbd_close(h); }
};

}  // namespace

Result<std::unique_ptr<NbdDevice>> NbdDevice::open(const Config& cfg, std::string* why) {
  std::string ignored;
  if (why == nullptr) why = &ignored;
  std::unique_ptr<nbd_handle, HandleCloser> h(nbd_create());
  if (!h) {
    *why = nbd_get_error();
    return err(ENOMEM);
  }
  if (int e = connect_with_deadline(h.get(), cfg.uri, cfg.connect_timeout_ms, why); e != 0)
    return err(e);

  if (!cfg.read_only && nbd_is_read_only(h.get()) == 1) {
    *why = "the server exports it read-only";
    return err(EROFS);
  }
  // Without NBD_CMD_FLUSH nothing written could be known durable, and every
  // fsync would be a lie.
  if (!cfg.read_only && nbd_can_flush(h.get()) != 1) {
    *why = "the server does not support flush, so no write could be made durable";
    return err(EOPNOTSUPP);
  }
  int64_t size = nbd_get_size(h.get());
  if (size < 0) {
    *why = nbd_get_error();
    return err(last_nbd_errno());
  }
  int64_t min = nbd_get_block_size(h.get(), LIBNBD_SIZE_MINIMUM);
  int64_t max = nbd_get_block_size(h.get(), LIBNBD_SIZE_MAXIMUM);
  // Every command is whole 4 KiB blocks at 4 KiB offsets: a minimum that
  // divides 4 KiB is always met; a larger one never is.
  if (min > int64_t(kBlockSize) || (min > 0 && kBlockSize % uint64_t(min) != 0)) {
    *why = "the server's minimum block size " + std::to_string(min) + " does not divide " +
           std::to_string(kBlockSize);
    return err(EINVAL);
  }
  uint32_t max_command = kDefaultMaxCommandBytes;
  if (max > 0) {
    uint64_t m = std::min<uint64_t>(uint64_t(max), kDefaultMaxCommandBytes);
    max_command = uint32_t(m - m % kBlockSize);
    if (max_command == 0) {
      *why = "the server's maximum block size " + std::to_string(max) + " is below " +
             std::to_string(kBlockSize);
      return err(EINVAL);
    }
  }

  int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) return err(errno);
  auto dev = std::make_unique<NbdDevice>(Key{}, cfg, h.release());
  dev->wake_fd_ = wake;
  dev->block_count_ = uint64_t(size) / kBlockSize;
  dev->sector_size_ = uint32_t(std::clamp<int64_t>(min, 512, kBlockSize));
  dev->max_command_bytes_ = max_command;
  dev->io_ = std::make_unique<IoThread>(*dev);
  if (!dev->io_->allocate_bounce_buffers()) return err(ENOMEM);
  dev->thread_ = std::thread([d = dev.get()] { d->io_->run(); });
  return dev;
}

NbdDevice::NbdDevice(Key, const Config& cfg, nbd_handle* h) : cfg_(cfg), handle_(h) {}

NbdDevice::~NbdDevice() {
  if (thread_.joinable()) {
    {
      std::lock_guard lk(mu_);
      stopping_ = true;
    }
    uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof(one));
    thread_.join();
  }
  // A polite NBD_CMD_DISC, so the server sees a clean end, then close. The
  // I/O thread is gone, so this thread may use the handle now.
  if (!lost_.load() && nbd_aio_is_ready(handle_)) {
    if (nbd_shutdown(handle_, 0) == 0) {
      auto deadline = Clock::now() + std::chrono::seconds(2);
      while (!nbd_aio_is_closed(handle_) && !nbd_aio_is_dead(handle_) &&
             Clock::now() < deadline)
        if (nbd_poll(handle_, 100) < 0) break;
    }
  }
  nbd_close(handle_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
  // Only now may another process connect in our place.
  cfg_.lock.reset();
}

Status NbdDevice::submit_and_wait(std::span<IoRequest*> requests) {
  if (requests.empty()) return Status::Ok();
  for (IoRequest* r : requests) r->result = validate_request(*r, block_count_, cfg_.read_only);
  // Flushes split the batch: each runs alone, after everything before it.
  size_t i = 0;
  while (i < requests.size()) {
    size_t j = i + 1;
    bool flush = requests[i]->op == IoOp::kFlush;
    if (!flush)
      while (j < requests.size() && requests[j]->op != IoOp::kFlush) j++;
    Group g;
    g.requests = requests.subspan(i, j - i);
    g.is_flush = flush;
    if (lost_.load(std::memory_order_acquire)) {
      for (IoRequest* r : g.requests)
        if (r->result == 0) r->result = EIO;
    } else {
      run_group(g);
    }
    i = j;
  }
  for (IoRequest* r : requests)
    if (r->result != 0) return err(r->result);
  return Status::Ok();
}

void NbdDevice::run_group(Group& g) {
  std::unique_lock lk(mu_);
  if (incoming_tail_ != nullptr) incoming_tail_->next = &g;
  else incoming_head_ = &g;
  incoming_tail_ = &g;
  lk.unlock();
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
  lk.lock();
  g.cv.wait(lk, [&] { return g.done; });
}

}  // namespace stablefs
