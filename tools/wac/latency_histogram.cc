#include "tools/wac/latency_histogram.h"

#include <bit>
#include <cmath>

namespace stablefs::wac {

size_t histogram_bucket(uint64_t value) {
  if (value < kSubBuckets) return size_t(value);
  int exponent = std::bit_width(value) - 1;  // >= kSubBucketBits
  if (exponent >= kMaxExponent) return kHistogramBuckets - 1;
  uint64_t sub = (value >> (exponent - kSubBucketBits)) & (kSubBuckets - 1);
  return kSubBuckets + size_t(exponent - kSubBucketBits) * kSubBuckets + size_t(sub);
}

uint64_t histogram_bucket_upper(size_t index) {
  if (index < kSubBuckets) return index;
  if (index >= kHistogramBuckets - 1) return UINT64_MAX;
  size_t rel = index - kSubBuckets;
  int exponent = int(rel / kSubBuckets) + kSubBucketBits;
  uint64_t sub = rel % kSubBuckets;
  int shift = exponent - kSubBucketBits;
  // Values (kSubBuckets + sub) << shift .. that plus (1 << shift) - 1.
  return ((uint64_t(kSubBuckets) + sub) << shift) + ((uint64_t(1) << shift) - 1);
}

void LatencyHistogram::add_bucket(size_t index, uint64_t count) {
  if (index >= kHistogramBuckets) index = kHistogramBuckets - 1;
  buckets_[index] += count;
  count_ += count;
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  for (size_t i = 0; i < kHistogramBuckets; i++) buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  note_max(other.max_);
}

uint64_t LatencyHistogram::quantile(double q) const {
  if (count_ == 0) return 0;
  // The rank of the q-quantile, 1-based: the smallest value with at least
  // ceil(q * count) values at or below it.
  uint64_t rank = uint64_t(std::ceil(q * double(count_)));
  if (rank < 1) rank = 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < kHistogramBuckets; i++) {
    seen += buckets_[i];
    if (seen >= rank) {
      uint64_t upper = histogram_bucket_upper(i);
      return upper < max_ ? upper : max_;
    }
  }
  return max_;
}

}  // namespace stablefs::wac
