#include "tests/crash/crash_image.h"

#include <algorithm>
#include <cstring>
#include <random>

#include "core/base/format.h"

namespace stablefs::crash {
namespace {

constexpr size_t kSector = 512;

// Position of the last flush strictly below `pos`, plus one (0 if none).
size_t durable_prefix(const std::vector<RecordedIo>& log, size_t pos) {
  for (size_t i = pos; i > 0; i--)
    if (log[i - 1].op == IoOp::kFlush) return i;
  return 0;
}

// True when the FUA write log[i] is durable for a crash before log entry
// `pos`: its whole batch completed below pos.
bool fua_durable(const std::vector<RecordedIo>& log, size_t i, size_t pos) {
  return log[i].fua && (pos >= log.size() || log[pos].batch != log[i].batch);
}

}  // namespace

std::string CrashPoint::describe() const {
  return "crash point pos=" + std::to_string(pos) + (drop ? " drop seed=" + std::to_string(seed) : "");
}

size_t durable_position(const std::vector<RecordedIo>& log, const CrashPoint& p) {
  return p.drop ? durable_prefix(log, p.pos) : p.pos;
}

void order_for_building(const std::vector<RecordedIo>& log, std::vector<CrashPoint>& points) {
  std::stable_sort(points.begin(), points.end(), [&](const CrashPoint& a, const CrashPoint& b) {
    return durable_position(log, a) < durable_position(log, b);
  });
}

std::vector<CrashPoint> flush_boundaries(const std::vector<RecordedIo>& log) {
  std::vector<CrashPoint> out{{0}};
  for (size_t i = 0; i < log.size(); i++) {
    bool batch_ends = i + 1 == log.size() || log[i + 1].batch != log[i].batch;
    bool fua_batch = false;
    for (size_t j = i + 1; j > 0 && log[j - 1].batch == log[i].batch && batch_ends; j--)
      fua_batch |= log[j - 1].fua;
    if (log[i].op == IoOp::kFlush || fua_batch) out.push_back({i + 1});
  }
  if (out.back().pos != log.size()) out.push_back({log.size()});
  return out;
}

std::vector<CrashPoint> sampled_torn_points(const std::vector<RecordedIo>& log, size_t n,
                                            uint64_t seed) {
  // Candidates: positions with at least one unflushed write before them.
  std::vector<size_t> cand;
  for (size_t i = 0; i < log.size(); i++)
    if (log[i].op == IoOp::kWrite) cand.push_back(i + 1);
  std::vector<CrashPoint> out;
  if (cand.empty()) return out;
  std::mt19937_64 rng(seed);
  for (size_t k = 0; k < n; k++) out.push_back({cand[rng() % cand.size()], true, rng()});
  std::sort(out.begin(), out.end(), [](const CrashPoint& a, const CrashPoint& b) {
    return a.pos < b.pos;
  });
  return out;
}

uint64_t CrashImage::block_count() const { return base_.size() / kBlockSize; }

Status CrashImage::submit_and_wait(std::span<IoRequest*> requests) {
  std::lock_guard lk(mu_);
  Status first;
  for (IoRequest* r : requests) {
    r->result = 0;
    if (r->op == IoOp::kFlush) continue;
    size_t len = r->bytes();
    if (len % kBlockSize != 0 || r->blocknr + len / kBlockSize > block_count()) {
      r->result = EINVAL;
      if (first.ok()) first = err(EINVAL);
      continue;
    }
    uint64_t b = r->blocknr;
    for (int i = 0; i < r->iov_count; i++) {
      auto* p = static_cast<uint8_t*>(r->iov[i].iov_base);
      for (size_t off = 0; off < r->iov[i].iov_len; off += kBlockSize, b++) {
        if (r->op == IoOp::kWrite) {
          overlay_[b].assign(p + off, p + off + kBlockSize);
        } else if (auto it = overlay_.find(b); it != overlay_.end()) {
          std::memcpy(p + off, it->second.data(), kBlockSize);
        } else {
          std::memcpy(p + off, base_.data() + b * kBlockSize, kBlockSize);
        }
      }
    }
  }
  return first;
}

std::vector<uint8_t> CrashImage::block(uint64_t blocknr) const {
  std::lock_guard lk(mu_);
  if (auto it = overlay_.find(blocknr); it != overlay_.end()) return it->second;
  auto* p = base_.data() + blocknr * kBlockSize;
  return std::vector<uint8_t>(p, p + kBlockSize);
}

CrashImageBuilder::CrashImageBuilder(std::vector<uint8_t> initial,
                                     const std::vector<RecordedIo>& log)
    : base_(std::move(initial)), log_(log) {}

void CrashImageBuilder::advance_base(size_t upto) {
  for (; base_pos_ < upto; base_pos_++) {
    const RecordedIo& e = log_[base_pos_];
    if (e.op != IoOp::kWrite) continue;
    std::memcpy(base_.data() + e.blocknr * kBlockSize, e.bytes.data(), e.bytes.size());
  }
}

std::unique_ptr<CrashImage> CrashImageBuilder::build(const CrashPoint& p) {
  size_t durable = durable_position(log_, p);
  advance_base(durable);

  auto image = std::make_unique<CrashImage>(base_);
  // The unflushed tail, block by block, over what each block held before
  // (so a torn block keeps the old bytes after its new sectors).
  auto& tail = image->overlay_;
  std::mt19937_64 rng(p.seed);
  struct Unit {
    uint64_t blocknr;
    const uint8_t* bytes;
    bool durable;  // a FUA write whose batch completed: never lost or torn
  };
  std::vector<Unit> units;
  for (size_t i = durable; i < p.pos; i++) {
    const RecordedIo& e = log_[i];
    if (e.op != IoOp::kWrite) continue;
    bool fua = fua_durable(log_, i, p.pos);
    for (size_t b = 0; b < e.bytes.size() / kBlockSize; b++)
      units.push_back({e.blocknr + b, e.bytes.data() + b * kBlockSize, fua});
  }
  size_t torn = units.empty() || rng() % 2 ? SIZE_MAX : rng() % units.size();
  if (torn != SIZE_MAX && units[torn].durable) torn = SIZE_MAX;
  for (size_t u = 0; u < units.size(); u++) {
    bool keep = u == torn || units[u].durable || rng() % 2 == 0;
    if (!keep) continue;
    auto [it, fresh] = tail.try_emplace(units[u].blocknr);
    if (fresh)
      it->second.assign(base_.data() + units[u].blocknr * kBlockSize,
                        base_.data() + (units[u].blocknr + 1) * kBlockSize);
    size_t len = u == torn ? kSector * (1 + rng() % (kBlockSize / kSector - 1)) : kBlockSize;
    std::memcpy(it->second.data(), units[u].bytes, len);
  }

  return image;
}

}  // namespace stablefs::crash
