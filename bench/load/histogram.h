// A log-linear latency histogram in the style of HdrHistogram: exact below
// 256 ns, then 128 buckets per power of two, so a recorded value is known to
// within 1/128 (0.8 %) of itself over the whole 64-bit range. Fixed size and
// trivially copyable, so producers can fill one in the harness's shared
// mapping and the harness can merge them.
//
// Thread safety: a value; one writer at a time, no internal synchronisation.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace taskring::bench {

class Histogram {
 public:
  static constexpr int kSubBucketBits = 7;
  static constexpr std::uint64_t kSubBuckets = std::uint64_t{1} << kSubBucketBits;  // 128
  // Indices 0..255 hold 0..255 exactly; each later group of 128 covers one
  // power of two. The last group covers values up to 2^64 - 1.
  static constexpr std::size_t kBucketCount = kSubBuckets * (64 - kSubBucketBits) + kSubBuckets;

  // Records one value; negative values (a clock step) are recorded as 0.
  // Never allocates.
  void record(std::int64_t value_ns) noexcept;
  // Adds every count of `other`.
  void merge(const Histogram& other) noexcept;

  std::uint64_t count() const noexcept { return count_; }
  std::uint64_t max() const noexcept { return max_; }
  std::uint64_t min() const noexcept { return count_ ? min_ : 0; }
  double mean() const noexcept;
  // The smallest recorded value v such that at least `percentile` % of the
  // values are <= v, reported as the highest value of v's bucket (never
  // below the true percentile), and never above max(). 0 when empty.
  // `percentile` is in [0, 100].
  std::uint64_t value_at_percentile(double percentile) const noexcept;

  // Bucket arithmetic, exposed for tests.
  static std::size_t bucket_of(std::uint64_t value) noexcept;
  static std::uint64_t bucket_low(std::size_t index) noexcept;
  static std::uint64_t bucket_high(std::size_t index) noexcept;

 private:
  std::array<std::uint64_t, kBucketCount> counts_{};
  std::uint64_t count_ = 0;
  std::uint64_t min_ = ~std::uint64_t{0};
  std::uint64_t max_ = 0;
  double sum_ = 0;  // a double, not long double: x87 adds cost more than the record itself
};
static_assert(std::is_trivially_copyable_v<Histogram>);

}  // namespace taskring::bench
