#include "core/io/block_device.h"

namespace stablefs {

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

Status BlockDevice::flush() {
  IoRequest r;
  r.op = IoOp::kFlush;
  IoRequest* rs[] = {&r};
  return submit_and_wait(rs);
}

}  // namespace stablefs
