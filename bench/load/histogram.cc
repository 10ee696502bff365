// Histogram: bucket arithmetic, recording, merging and percentiles.
#include "histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace taskring::bench {

std::size_t Histogram::bucket_of(std::uint64_t value) noexcept {
  if (value < 2 * kSubBuckets) return static_cast<std::size_t>(value);
  // The group is how far the value's top bit sits above the sub-bucket
  // range; within a group the next 7 bits pick the bucket.
  const int top_bit = 63 - std::countl_zero(value);
  const int group = top_bit - kSubBucketBits;
  return static_cast<std::size_t>(kSubBuckets * static_cast<std::uint64_t>(group) + (value >> group));
}

std::uint64_t Histogram::bucket_low(std::size_t index) noexcept {
  if (index < 2 * kSubBuckets) return index;
  const std::uint64_t group = index / kSubBuckets - 1;
  const std::uint64_t sub = index - kSubBuckets * group;  // in [128, 255]
  return sub << group;
}

std::uint64_t Histogram::bucket_high(std::size_t index) noexcept {
  if (index + 1 >= kBucketCount) return ~std::uint64_t{0};
  return bucket_low(index + 1) - 1;
}

void Histogram::record(std::int64_t value_ns) noexcept {
  const std::uint64_t v = value_ns < 0 ? 0 : static_cast<std::uint64_t>(value_ns);
  ++counts_[bucket_of(v)];
  ++count_;
  min_ = std::min(min_, v);
  max_ = std::max(max_, v);
  sum_ += static_cast<double>(v);
}

void Histogram::merge(const Histogram& other) noexcept {
  for (std::size_t i = 0; i < kBucketCount; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

double Histogram::mean() const noexcept {
  return count_ == 0 ? 0.0 : sum_ / static_cast<double>(count_);
}

std::uint64_t Histogram::value_at_percentile(double percentile) const noexcept {
  if (count_ == 0) return 0;
  const double p = std::clamp(percentile, 0.0, 100.0);
  // The rank of the wanted value, 1-based: at least one value, at most all.
  // The small subtraction keeps a product such as 99.9 / 100 * 1000, which
  // comes out as 999.0000000000001, from rounding up to the next rank.
  auto rank = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_) - 1e-9));
  rank = std::clamp<std::uint64_t>(rank, 1, count_);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBucketCount; ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(bucket_high(i), max_);
  }
  return max_;
}

}  // namespace taskring::bench
