// NbdDevice's insides shared by its two files: the Group a submitter
// queues, the Command slot of one NBD command in flight, and the I/O thread
// that owns the libnbd handle (nbd_io_thread.cc). Private to core/io: the
// design is described at the top of nbd_device.h.
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/base/format.h"
#include "core/io/nbd_device.h"

namespace stablefs {

// nbd_get_errno() of the last failed libnbd call on this thread, or EIO
// when libnbd recorded none.
int last_nbd_errno();

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
  std::chrono::steady_clock::time_point issued;
};

// Everything the I/O thread owns. Only that thread touches it.
class NbdDevice::IoThread {
 public:
  explicit IoThread(NbdDevice& dev) : dev_(dev), hs_(dev.handles_) {
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
  // Issues discard request `r` as trims; false when it must wait.
  bool issue_discard(Group& g, IoRequest* r);
  bool conflicts(uint64_t offset, uint64_t length, bool write) const;
  void issue(Group& g, IoRequest* r, uint64_t offset, uint64_t length, void* buf, bool write,
             bool flush, int bounce = -1);
  static int on_complete(void* user_data, int* error);
  void finish(Command& c, int error);
  void pop_head();
  void complete_group(Group& g);
  int poll_once();
  void check_stall();
  // Shuts every connection's socket down: libnbd then fails what is in
  // flight through the callbacks, and nothing reads a socket again.
  void shut_down_sockets();
  bool any_connection_dead() const;
  void check_connection();
  void fail_all_pending();

  NbdDevice& dev_;
  // The connections (one unless the server advertises multi-conn). Commands
  // go round-robin; cmds_ spans all of them, so the overlap rule holds
  // across connections too.
  const std::vector<nbd_handle*> hs_;
  size_t next_handle_ = 0;
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

}  // namespace stablefs
