#include "core/io/block_device.h"

#include <cerrno>

#include "core/base/format.h"

namespace stablefs {

int check_request_shape(const IoRequest& r, uint64_t device_blocks) {
  if (r.iov_count < 1 || r.iov_count > IoRequest::kMaxSegments) return EINVAL;
  uint64_t bytes = 0;
  for (int i = 0; i < r.iov_count; i++) {
    auto addr = reinterpret_cast<uintptr_t>(r.iov[i].iov_base);
    if (addr % kBlockSize != 0 || r.iov[i].iov_len == 0 || r.iov[i].iov_len % kBlockSize != 0)
      return EINVAL;
    bytes += r.iov[i].iov_len;
  }
  uint64_t blocks = bytes / kBlockSize;
  if (r.blocknr > device_blocks || blocks > device_blocks - r.blocknr) return EINVAL;
  return 0;
}

int validate_request(const IoRequest& r, uint64_t device_blocks, bool read_only) {
  if (r.op == IoOp::kFlush) return 0;
  if (r.op == IoOp::kDiscard) {
    if (read_only) return EROFS;
    bool inside = r.discard_blocks > 0 && r.blocknr <= device_blocks &&
                  r.discard_blocks <= device_blocks - r.blocknr;
    return inside && r.iov_count == 0 ? 0 : EINVAL;
  }
  if (r.op != IoOp::kRead && r.op != IoOp::kWrite) return EINVAL;
  if (r.op == IoOp::kWrite && read_only) return EROFS;
  return check_request_shape(r, device_blocks);
}

Status BlockDevice::read(uint64_t blocknr, void* buf, size_t len) {
  IoRequest r;
  r.op = IoOp::kRead;
  r.blocknr = blocknr;
  r.add(buf, len);
  IoRequest* rs[] = {&r};
  return submit_and_wait(rs);
}

Status BlockDevice::write(uint64_t blocknr, const void* buf, size_t len) {
  IoRequest r;
  r.op = IoOp::kWrite;
  r.blocknr = blocknr;
  r.add(const_cast<void*>(buf), len);
  IoRequest* rs[] = {&r};
  return submit_and_wait(rs);
}

Status BlockDevice::discard(uint64_t blocknr, uint64_t count) {
  IoRequest r;
  r.op = IoOp::kDiscard;
  r.blocknr = blocknr;
  r.discard_blocks = count;
  IoRequest* rs[] = {&r};
  return submit_and_wait(rs);
}

Status BlockDevice::flush() {
  IoRequest r;
  r.op = IoOp::kFlush;
  IoRequest* rs[] = {&r};
  return submit_and_wait(rs);
}

}  // namespace stablefs
