// The latency histogram: bucket arithmetic, percentiles against a sorted
// oracle, merging.
#include "histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "test_support.h"

namespace taskring::bench {
namespace {

TEST(HistogramTest, EmptyReportsZero) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.value_at_percentile(50), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.min(), 0u);
}

TEST(HistogramTest, SmallValuesAreExact) {
  for (std::uint64_t v = 0; v < 256; ++v) {
    const std::size_t b = Histogram::bucket_of(v);
    EXPECT_EQ(Histogram::bucket_low(b), v);
    EXPECT_EQ(Histogram::bucket_high(b), v);
  }
}

TEST(HistogramTest, BucketsTileTheRangeWithBoundedWidth) {
  // Consecutive buckets touch, and each is at most 1/128 of its low end wide.
  for (std::size_t i = 1; i + 1 < Histogram::kBucketCount; ++i) {
    ASSERT_EQ(Histogram::bucket_low(i), Histogram::bucket_high(i - 1) + 1) << i;
    const std::uint64_t low = Histogram::bucket_low(i);
    const std::uint64_t width = Histogram::bucket_high(i) - low + 1;
    ASSERT_LE(width * Histogram::kSubBuckets, std::max<std::uint64_t>(low, Histogram::kSubBuckets)) << i;
  }
  EXPECT_EQ(Histogram::bucket_high(Histogram::kBucketCount - 1), ~std::uint64_t{0});
  EXPECT_EQ(Histogram::bucket_of(~std::uint64_t{0}), Histogram::kBucketCount - 1);
}

TEST(HistogramTest, EveryValueFallsInItsBucket) {
  const std::uint64_t seed = taskring::testing::test_seed();
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 100000; ++i) {
    const std::uint64_t v = rng() >> (rng() % 64);
    const std::size_t b = Histogram::bucket_of(v);
    ASSERT_LE(Histogram::bucket_low(b), v) << "seed " << seed << " value " << v;
    ASSERT_GE(Histogram::bucket_high(b), v) << "seed " << seed << " value " << v;
  }
}

TEST(HistogramTest, PercentilesMatchSortedOracleWithinPrecision) {
  const std::uint64_t seed = taskring::testing::test_seed();
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> dist(9.0, 1.5);  // around 8 us with a long tail
  std::vector<std::int64_t> values;
  Histogram h;
  for (int i = 0; i < 200000; ++i) {
    const auto v = static_cast<std::int64_t>(dist(rng));
    values.push_back(v);
    h.record(v);
  }
  std::sort(values.begin(), values.end());
  for (std::size_t permille : {10u, 500u, 900u, 990u, 999u, 1000u}) {
    const double p = static_cast<double>(permille) / 10.0;
    // The oracle's rank in integers: ceil(permille * n / 1000).
    const std::size_t rank = (permille * values.size() + 999) / 1000;
    const auto truth = static_cast<std::uint64_t>(values[std::max<std::size_t>(rank, 1) - 1]);
    const std::uint64_t got = h.value_at_percentile(p);
    EXPECT_GE(got, truth) << "seed " << seed << " p" << p;
    EXPECT_LE(got, truth + truth / 128 + 1) << "seed " << seed << " p" << p;
  }
  EXPECT_EQ(h.max(), static_cast<std::uint64_t>(values.back()));
  EXPECT_EQ(h.min(), static_cast<std::uint64_t>(values.front()));
}

TEST(HistogramTest, PercentileRanksDoNotRoundUpPastExactProducts) {
  // 99.9 / 100 * 1000 is 999.0000000000001 in doubles: the rank is still 999.
  Histogram h;
  for (int v = 1; v <= 1000; ++v) h.record(v);
  // Reported as the top of the true value's bucket; 999's bucket ends at 999
  // and 1000 starts the next, so a rank rounded up would show as 1003.
  const auto top_of = [](std::uint64_t v) { return Histogram::bucket_high(Histogram::bucket_of(v)); };
  EXPECT_EQ(h.value_at_percentile(99.9), top_of(999));
  EXPECT_EQ(top_of(999), 999u);
  EXPECT_EQ(h.value_at_percentile(99), top_of(990));
  EXPECT_EQ(h.value_at_percentile(50), top_of(500));
  EXPECT_EQ(h.value_at_percentile(100), 1000u);  // never above the maximum
}

TEST(HistogramTest, NegativeValuesCountAsZero) {
  Histogram h;
  h.record(-5);
  EXPECT_EQ(h.count(), 1u);
  EXPECT_EQ(h.value_at_percentile(100), 0u);
}

TEST(HistogramTest, MergeAddsCountsAndExtremes) {
  Histogram a, b;
  for (int i = 0; i < 90; ++i) a.record(1000);
  for (int i = 0; i < 10; ++i) b.record(1'000'000);
  a.merge(b);
  EXPECT_EQ(a.count(), 100u);
  EXPECT_EQ(a.max(), 1'000'000u);
  EXPECT_EQ(a.min(), 1000u);
  EXPECT_LE(a.value_at_percentile(90), 1000u + 1000 / 128);
  EXPECT_GE(a.value_at_percentile(91), 1'000'000u);
  EXPECT_NEAR(a.mean(), (90 * 1000.0 + 10 * 1e6) / 100, 1e-6);
}

}  // namespace
}  // namespace taskring::bench
