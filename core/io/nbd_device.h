// The backing store on an NBD server, reached through libnbd's
// asynchronous API (nbd_aio_pread/pwrite/flush with completion callbacks).
//
// Threads. One I/O thread owns the libnbd handles: no other thread ever
// calls into libnbd after open. A submitter wraps its
// requests in a Group on its own stack, appends it to `incoming_` under
// `mu_`, wakes the I/O thread through an eventfd and sleeps on the group's
// condition variable. The I/O thread issues commands, polls the socket and
// runs the completion callbacks; when a group's last command completes it
// marks the group done under `mu_` and notifies. So completions are reaped
// by a thread that never waits for a submitter (seed 003), and submitters
// never hold a lock while the server works.
//
// Connections. One, or up to Config::connections when the server
// advertises multi-conn (nbd_can_multi_conn): the NBD promise that a flush
// on any connection covers every write completed on all of them, which is
// what keeps one NBD_CMD_FLUSH a barrier. The I/O thread spreads commands
// over them round-robin; the overlap rule below spans all connections (one
// command table). Servers serve a bounded number of commands per
// connection at once (nbdkit: 16 threads), so on a slow server more
// connections mean more commands served at once. A server that refuses an
// extra connection (nbdkit --filter=limit) leaves the device on those it
// accepted. Losing any connection is losing the device. A handle's own lock is held for
// the whole of a blocking libnbd call, which is why the handle is not
// shared between submitting threads.
//
// Requests. NBD has no vectored I/O. A request of several segments that
// fit kBounceBytes (the engine's writeback and readahead requests: up to 64
// pages) is copied into a preallocated contiguous bounce buffer and sent as
// one command, the reads copied out at completion; when all bounce buffers
// are in flight it waits for one. Any other request becomes one command per
// segment, and a segment larger than the server's maximum block size is cut
// into several commands, all at their own absolute offsets. The request's
// result is the first error of any of its commands; it completes only when
// all of them have. Nothing is retried: an NBD error reply is the server's
// verdict, not a transient condition like a short write, so there is no
// partial resubmission that could duplicate a segment (seed 000). A caller
// that retries resends every command of the request at the same offsets,
// which is idempotent.
//
// Ordering. libnbd leaves the order of overlapping commands in flight
// undefined, so a write is never issued while a command overlapping it is in
// flight, nor a read while an overlapping write is. Commands are issued in
// submission order: when the next one conflicts, issuing pauses until the
// command it conflicts with completes (conflicts should be rare, so this
// head-of-line wait costs little). A flush is a barrier inside its batch, as
// on UringDevice: it is issued after every earlier request of the batch
// completed, and later ones after it completed. NBD_CMD_FLUSH covers every
// write the server completed before it, from any submitter.
//
// Memory. Command slots and bounce buffers are allocated at open; nothing
// of ours is allocated per request. libnbd itself allocates a small record
// per command: if that fails, the request fails with ENOMEM, a device error
// to the engine (the one place the writeback path can meet an allocation).
//
// FUA. A write request with `fua` goes out with NBD_CMD_FLAG_FUA when the
// server advertises it (nbd_can_fua): the server replies only once that
// write is on stable storage, so the durability costs no extra round trip
// (has_native_fua() is then true, and the journal lets the commit ride on
// it). A server without FUA gets the writes plain and then a flush, issued
// after all of the batch's writes completed: as durable, one round trip
// more.
//
// Failure. A lost connection (EOF, a reset, a server killed) fails every
// command in flight, every queued one and every later one with EIO, logged
// once; upstream, the journal aborts to read-only as for any device error.
// There is no reconnect: commands in flight at the loss may or may not have
// reached the server, and a new connection could not tell which. A command
// that has not completed within `io_timeout_ms` is treated as a lost
// connection (the socket is shut down), so a stalled server turns into
// errors instead of a wedged filesystem.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/io/block_device.h"
#include "core/io/host_lock.h"

struct nbd_handle;

namespace stablefs {

class NbdDevice : public BlockDevice {
 public:
  // Commands in flight at once on the connection.
  static constexpr int kMaxInFlight = 64;
  // Multi-segment requests of up to kBounceBytes travel as one command
  // through one of these preallocated contiguous buffers (16 x 256 KiB).
  static constexpr int kBounceBuffers = 16;
  static constexpr uint32_t kBounceBytes = IoRequest::kMaxSegments * 4096;
  // The largest command sent to a server that advertises no maximum: the
  // NBD protocol's recommended limit.
  static constexpr uint32_t kDefaultMaxCommandBytes = 32u << 20;
  // The most connections one device opens.
  static constexpr int kMaxConnections = 8;

  struct Config {
    std::string uri;
    bool read_only = false;
    // How long the NBD handshake may take. qemu-nbd (default --shared=1)
    // holds a second client in the handshake until the first disconnects,
    // so this is also how long a second daemon waits for a busy export.
    uint32_t connect_timeout_ms = 10000;
    // A command older than this means the server stalled: the connection is
    // dropped and everything fails with EIO.
    uint32_t io_timeout_ms = 60000;
    // Connections to open when the server advertises multi-conn (1 to
    // kMaxConnections); one otherwise.
    int connections = 1;
    // This host's lock on the export (see open_device), or null. The
    // device lets go of it only after closing the connection, so the next
    // holder never finds us still connected.
    std::shared_ptr<HostLock> lock;
  };

  // Connects and negotiates. Errors: EINVAL (not a URI libnbd accepts, or
  // block size constraints that 4 KiB blocks cannot meet), EROFS (a
  // read-only export opened read-write), ETIMEDOUT (no handshake in time),
  // or the connection's errno. *why gets libnbd's message.
  static Result<std::unique_ptr<NbdDevice>> open(const Config& cfg, std::string* why);

 private:
  struct Key {};

 public:
  NbdDevice(Key, const Config& cfg, std::vector<nbd_handle*> handles);
  ~NbdDevice() override;
  NbdDevice(const NbdDevice&) = delete;
  NbdDevice& operator=(const NbdDevice&) = delete;

  uint64_t block_count() const override { return block_count_; }
  uint32_t sector_size() const override { return sector_size_; }
  // Validates every request (EINVAL for a bad shape, EROFS for a write to a
  // read-only device), then runs the rest as described above. Safe from
  // many threads at once.
  Status submit_and_wait(std::span<IoRequest*> requests) override;
  // The server advertised FUA (and the export is writable).
  bool has_native_fua() const override { return fua_; }
  // The server advertised NBD_CMD_TRIM (and the export is writable). On a
  // server without it a discard completes without a command.
  bool can_discard() const override { return trim_; }
  // The largest command this device sends (the server's maximum, rounded
  // down to whole blocks, or kDefaultMaxCommandBytes).
  uint32_t max_command_bytes() const { return max_command_bytes_; }
  // NBD commands issued so far (a request may take several).
  uint64_t commands_issued() const { return commands_issued_.load(std::memory_order_relaxed); }
  // Most commands that were ever in flight at once.
  int max_in_flight_seen() const { return max_in_flight_seen_.load(std::memory_order_relaxed); }
  // Connections open (1 unless multi-conn).
  int connections() const { return int(handles_.size()); }
  // True once the connection is gone; every request then fails with EIO.
  bool connection_lost() const { return lost_.load(std::memory_order_acquire); }

 private:
  struct Group;
  struct Command;
  class IoThread;

  // Hands a group (requests without a flush, or one lone flush) to the I/O
  // thread, and waits until its last command completed.
  void enqueue(Group& g);
  void wait_for(Group& g);
  // Runs one group of `requests` (or fails them when the connection is gone).
  void run_group(std::span<IoRequest*> requests, bool is_flush);

  Config cfg_;
  // Used only by the I/O thread after open; the first is the one
  // negotiated with, the others were added for multi-conn.
  const std::vector<nbd_handle*> handles_;
  uint64_t block_count_ = 0;
  uint32_t sector_size_ = 512;
  uint32_t max_command_bytes_ = kDefaultMaxCommandBytes;
  bool fua_ = false;
  bool trim_ = false;
  int wake_fd_ = -1;  // eventfd: a group arrived or the device is closing

  // Protects incoming_head_/incoming_tail_, stopping_ and every Group's
  // `done`. A leaf lock, never held across I/O or a libnbd call.
  std::mutex mu_;
  Group* incoming_head_ = nullptr;
  Group* incoming_tail_ = nullptr;
  bool stopping_ = false;

  std::atomic<bool> lost_{false};
  std::atomic<uint64_t> commands_issued_{0};
  std::atomic<int> max_in_flight_seen_{0};

  std::unique_ptr<IoThread> io_;
  std::thread thread_;
};

}  // namespace stablefs
