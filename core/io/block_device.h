// The backing store, seen as an array of kBlockSize blocks.
//
// A request is one unit: a read or write of one contiguous run of blocks
// (any number of segments), a flush, or a discard of a run of blocks. Implementations submit each request
// whole and, on a transient error (EAGAIN, EINTR, a short transfer), retry
// the whole request, so no segment is ever lost or written twice out of
// order. Ordering is explicit: only flush() is a barrier; requests in one
// batch may complete in any order.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>

#include "core/base/result.h"

namespace stablefs {

enum class IoOp : uint8_t { kRead, kWrite, kFlush, kDiscard };

// Caller-owned request. Buffers must be kBlockSize-aligned and their total
// length a multiple of kBlockSize (O_DIRECT rules). The device never
// allocates per request, so the writeback path can preallocate these.
struct IoRequest {
  static constexpr int kMaxSegments = 64;
  IoOp op = IoOp::kRead;
  uint64_t blocknr = 0;
  iovec iov[kMaxSegments];
  int iov_count = 0;
  // kWrite only: Forced Unit Access. The write is durable when the request
  // completes, with no flush needed for it (it orders nothing else). Every
  // device honours it; has_native_fua() says whether that is cheaper than
  // the write plus a flush.
  bool fua = false;
  // kDiscard only (no segments): blocks [blocknr, blocknr + discard_blocks)
  // hold nothing anyone will read; the store may release them. Afterwards
  // they read as anything (zeroes, or the old bytes).
  uint64_t discard_blocks = 0;
  int result = 0;  // out: 0 or positive errno

  void add(void* buf, size_t len) { iov[iov_count++] = iovec{buf, len}; }
  size_t bytes() const {
    size_t n = 0;
    for (int i = 0; i < iov_count; i++) n += iov[i].iov_len;
    return n;
  }
};

// 0 when a read or write request's segments are whole, aligned blocks
// (O_DIRECT's rules, demanded everywhere so a request works on every
// backing store) inside a device of `device_blocks`, else EINVAL.
int check_request_shape(const IoRequest& r, uint64_t device_blocks);

// 0 when a request may be submitted to a device of `device_blocks`, else
// the errno it fails with: EINVAL for an unknown op, a bad shape or a
// discard outside the device, EROFS for a write or discard on a read-only
// device. Flushes always pass.
int validate_request(const IoRequest& r, uint64_t device_blocks, bool read_only);

class BlockDevice {
 public:
  virtual ~BlockDevice() = default;

  virtual uint64_t block_count() const = 0;
  virtual uint32_t sector_size() const = 0;

  // Submits every request, then waits for all of them. Each request's
  // result is filled in. Returns the first error, or ok when all succeeded.
  // Safe to call from many threads at once.
  virtual Status submit_and_wait(std::span<IoRequest*> requests) = 0;

  // True when a FUA write costs the device no more than a plain write (an
  // NBD server that advertises FUA: the durability rides on the write's own
  // reply, where a flush would be one more round trip). False where FUA is
  // emulated by a flush, so callers prefer a batch of writes and one flush.
  virtual bool has_native_fua() const { return false; }
  // True when a discard can release blocks in the store (an NBD server with
  // NBD_CMD_TRIM, a file that can punch holes). Elsewhere a discard
  // completes doing nothing.
  virtual bool can_discard() const { return false; }
  // Requests resubmitted after a transient failure (EAGAIN, EINTR, a short
  // transfer) since the device was opened; 0 for a device that never retries.
  virtual uint64_t transient_retries() const { return 0; }

  // Convenience wrappers over submit_and_wait.
  Status read(uint64_t blocknr, void* buf, size_t len);
  Status write(uint64_t blocknr, const void* buf, size_t len);
  Status flush();
  Status discard(uint64_t blocknr, uint64_t count);
};

}  // namespace stablefs
