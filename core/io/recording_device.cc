#include "core/io/recording_device.h"

#include <cstring>

#include "core/base/format.h"

namespace stablefs {

size_t WriteLog::size() const {
  std::lock_guard lk(mu_);
  return entries_.size();
}

std::vector<RecordedIo> WriteLog::snapshot() const {
  std::lock_guard lk(mu_);
  return entries_;
}

RecordingDevice::RecordingDevice(BlockDevice& target, std::shared_ptr<WriteLog> log)
    : target_(target), log_(std::move(log)) {}

Status RecordingDevice::submit_and_wait(std::span<IoRequest*> requests) {
  std::lock_guard order(order_mu_);
  Status s = target_.submit_and_wait(requests);
  // Requests in one batch are unordered with respect to each other; logging
  // them in batch order is one of the orders the device may have used.
  std::lock_guard lk(log_->mu_);
  const uint64_t batch = ++log_->batches_;
  for (IoRequest* r : requests) {
    if (r->result != 0 || r->op == IoOp::kRead) continue;
    RecordedIo e;
    e.op = r->op;
    e.blocknr = r->blocknr;
    e.fua = r->op == IoOp::kWrite && r->fua;
    e.batch = batch;
    if (r->op == IoOp::kDiscard) {
      e.op = IoOp::kWrite;
      e.discard = true;
      e.bytes.assign(r->discard_blocks * kBlockSize, 0);
    } else if (r->op == IoOp::kWrite) {
      e.bytes.resize(r->bytes());
      size_t at = 0;
      for (int i = 0; i < r->iov_count; i++) {
        std::memcpy(e.bytes.data() + at, r->iov[i].iov_base, r->iov[i].iov_len);
        at += r->iov[i].iov_len;
      }
    }
    log_->entries_.push_back(std::move(e));
  }
  return s;
}

}  // namespace stablefs
