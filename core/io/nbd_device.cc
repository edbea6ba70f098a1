#include "core/io/nbd_device.h"

#include <libnbd.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "core/base/format.h"
#include "core/base/log.h"
#include "core/io/nbd_io_thread.h"

namespace stablefs {

using Clock = std::chrono::steady_clock;

namespace {

// Connects with a deadline: nbd_connect_uri would wait for ever on a
// server that holds the handshake (qemu-nbd with a client already on).
int connect_with_deadline(nbd_handle* h, const std::string& uri, uint32_t timeout_ms,
                          std::string* why) {
  // The URI comes from whoever mounts (a command line, fstab), not from
  // the server: let it name local files, which TLS needs
  // (tls-psk-file=, tls-certificates=).
  nbd_set_uri_allow_local_file(h, true);
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
using UniqueHandle = std::unique_ptr<nbd_handle, HandleCloser>;

// Up to `more` extra connections to a multi-conn server. A connection the
// server refuses or holds (a client limit) ends the attempt: the device
// runs on what it has, and says so.
std::vector<UniqueHandle> extra_connections(const NbdDevice::Config& cfg, int more) {
  std::vector<UniqueHandle> out;
  for (int i = 0; i < more; i++) {
    UniqueHandle h(nbd_create());
    std::string why;
    if (!h || connect_with_deadline(h.get(), cfg.uri, 2000, &why) != 0) {
      SFS_LOG("NBD %s: the server advertises multi-conn but refused connection %d (%s); "
              "going on with %d",
              cfg.uri.c_str(), i + 2, why.c_str(), i + 1);
      break;
    }
    out.push_back(std::move(h));
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<NbdDevice>> NbdDevice::open(const Config& cfg, std::string* why) {
  std::string ignored;
  if (why == nullptr) why = &ignored;
  UniqueHandle h(nbd_create());
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

  std::vector<UniqueHandle> extra;
  int want = std::clamp(cfg.connections, 1, kMaxConnections);
  if (want > 1 && nbd_can_multi_conn(h.get()) == 1) extra = extra_connections(cfg, want - 1);

  int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) return err(errno);
  std::vector<nbd_handle*> handles = {h.release()};
  for (UniqueHandle& e : extra) handles.push_back(e.release());
  auto dev = std::make_unique<NbdDevice>(Key{}, cfg, std::move(handles));
  dev->wake_fd_ = wake;
  dev->block_count_ = uint64_t(size) / kBlockSize;
  dev->sector_size_ = uint32_t(std::clamp<int64_t>(min, 512, kBlockSize));
  dev->max_command_bytes_ = max_command;
  dev->fua_ = !cfg.read_only && nbd_can_fua(dev->handles_[0]) == 1;
  dev->trim_ = !cfg.read_only && nbd_can_trim(dev->handles_[0]) == 1;
  dev->io_ = std::make_unique<IoThread>(*dev);
  if (!dev->io_->allocate_bounce_buffers()) return err(ENOMEM);
  dev->thread_ = std::thread([d = dev.get()] { d->io_->run(); });
  return dev;
}

NbdDevice::NbdDevice(Key, const Config& cfg, std::vector<nbd_handle*> handles)
    : cfg_(cfg), handles_(std::move(handles)) {}

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
  // A polite NBD_CMD_DISC on each connection, so the server sees a clean
  // end, then close. The I/O thread is gone, so this thread may use the
  // handles now.
  for (nbd_handle* h : handles_) {
    if (!lost_.load() && nbd_aio_is_ready(h)) {
      if (nbd_shutdown(h, 0) == 0) {
        auto deadline = Clock::now() + std::chrono::seconds(2);
        while (!nbd_aio_is_closed(h) && !nbd_aio_is_dead(h) && Clock::now() < deadline)
          if (nbd_poll(h, 100) < 0) break;
      }
    }
    nbd_close(h);
  }
  if (wake_fd_ >= 0) ::close(wake_fd_);
  // Only now may another process connect in our place.
  cfg_.lock.reset();
}

Status NbdDevice::submit_and_wait(std::span<IoRequest*> requests) {
  for (IoRequest* r : requests) r->result = validate_request(*r, block_count_, cfg_.read_only);
  // Flushes split the batch: each runs alone, after everything before it.
  size_t i = 0;
  while (i < requests.size()) {
    size_t j = i + 1;
    bool flush = requests[i]->op == IoOp::kFlush;
    if (!flush)
      while (j < requests.size() && requests[j]->op != IoOp::kFlush) j++;
    auto group = requests.subspan(i, j - i);
    run_group(group, flush);
    // FUA the server cannot do: a flush after the writes completed makes
    // them just as durable before the caller hears of them.
    bool emulate_fua = false;
    for (IoRequest* r : group) emulate_fua |= r->op == IoOp::kWrite && r->fua && r->result == 0;
    if (emulate_fua && !fua_) {
      IoRequest f;
      f.op = IoOp::kFlush;
      IoRequest* fs[] = {&f};
      run_group(fs, true);
      if (f.result != 0)
        for (IoRequest* r : group)
          if (r->op == IoOp::kWrite && r->fua && r->result == 0) r->result = f.result;
    }
    i = j;
  }
  for (IoRequest* r : requests)
    if (r->result != 0) return err(r->result);
  return Status::Ok();
}

void NbdDevice::run_group(std::span<IoRequest*> requests, bool is_flush) {
  if (lost_.load(std::memory_order_acquire)) {
    for (IoRequest* r : requests)
      if (r->result == 0) r->result = EIO;
    return;
  }
  Group g;
  g.requests = requests;
  g.is_flush = is_flush;
  enqueue(g);
  wait_for(g);
}

void NbdDevice::enqueue(Group& g) {
  {
    std::lock_guard lk(mu_);
    if (incoming_tail_ != nullptr) incoming_tail_->next = &g;
    else incoming_head_ = &g;
    incoming_tail_ = &g;
  }
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
}

void NbdDevice::wait_for(Group& g) {
  std::unique_lock lk(mu_);
  g.cv.wait(lk, [&] { return g.done; });
}

}  // namespace stablefs
