// Latency histogram with HDR-style fixed buckets: 16 linear sub-buckets per
// power of two, so every recorded value is known to within 1/16 (6%) while
// the whole range (1 ns .. ~18 min) fits in a few hundred counters. Fixed
// buckets are what make per-worker histograms in shared memory mergeable by
// plain addition, with no allocation in the workers.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace stablefs::wac {

constexpr int kSubBucketBits = 4;
constexpr int kSubBuckets = 1 << kSubBucketBits;
constexpr int kMaxExponent = 40;  // values >= 2^40 ns (~18 min) share the last bucket
constexpr size_t kHistogramBuckets = kSubBuckets + (kMaxExponent - kSubBucketBits) * kSubBuckets;

// Bucket index of a value (nanoseconds).
size_t histogram_bucket(uint64_t value);
// Largest value that falls in bucket `index`: percentiles report it, so a
// reported p99 is never below the true one.
uint64_t histogram_bucket_upper(size_t index);

// A plain (non-shared) histogram: what the workers' shared ones merge into.
class LatencyHistogram {
 public:
  void add_bucket(size_t index, uint64_t count);
  void record(uint64_t value) { add_bucket(histogram_bucket(value), 1); }
  void merge(const LatencyHistogram& other);
  void note_max(uint64_t value) { max_ = value > max_ ? value : max_; }

  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }
  // The value at quantile q in [0, 1]; 0 for an empty histogram. Never
  // more than max(), the exact maximum.
  uint64_t quantile(double q) const;

 private:
  std::array<uint64_t, kHistogramBuckets> buckets_{};
  uint64_t count_ = 0;
  uint64_t max_ = 0;
};

}  // namespace stablefs::wac
