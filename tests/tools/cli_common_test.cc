// Unit tests of the CLI's shared parsers (tools/taskring/common.h) that need
// more cases than end-to-end runs of the binary can afford: the duration
// syntax of --delay, --time-limit and --result-ttl.
#include "common.h"

#include <cstdint>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace {

using ::testing::HasSubstr;
using taskring::cli::duration_text;
using taskring::cli::parse_duration;

constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kS = 1'000'000'000;
constexpr std::int64_t kNoLimit = INT64_MAX;

std::int64_t parsed(const std::string& text, std::int64_t max_ns = kNoLimit) {
  auto r = parse_duration(text, max_ns);
  EXPECT_TRUE(r.is_ok()) << text << ": " << r.status().message();
  return r.is_ok() ? *r : -1;
}

std::string rejected(const std::string& text, std::int64_t max_ns = kNoLimit) {
  auto r = parse_duration(text, max_ns);
  EXPECT_FALSE(r.is_ok()) << text << " was accepted as " << (r.is_ok() ? *r : 0) << " ns";
  return r.is_ok() ? std::string() : r.status().message();
}

TEST(ParseDurationTest, RejectsEmptyText) { EXPECT_THAT(rejected(""), HasSubstr("must be a duration")); }

TEST(ParseDurationTest, RejectsNumberWithoutUnit) {
  const std::string message = rejected("300");
  EXPECT_THAT(message, HasSubstr("'300'"));
  EXPECT_THAT(message, HasSubstr("250ms"));
  EXPECT_THAT(rejected("1.5"), HasSubstr("'1.5'"));
  EXPECT_THAT(rejected("1h30"), HasSubstr("'1h30'"));
}

TEST(ParseDurationTest, RejectsSignsSpacesAndUnknownUnits) {
  for (const char* text : {"-1s", "+1s", " 1s", "1s ", "1 s", "1x", "1S", "1MS", "1sec", "s", ".s", "1..5s", "1.5.s",
                           "0x10s", "1e3ms", "inf", "nan"}) {
    EXPECT_THAT(rejected(text), HasSubstr(std::string("'") + text + "'")) << text;
  }
}

TEST(ParseDurationTest, RejectsValuesFinerThanANanosecond) {
  EXPECT_THAT(rejected("1.5ns"), HasSubstr("whole nanoseconds"));
  EXPECT_THAT(rejected("0.0000000001s"), HasSubstr("whole nanoseconds"));
  EXPECT_THAT(rejected("0.1234567890123456789d"), HasSubstr("whole nanoseconds"));
}

TEST(ParseDurationTest, RejectsValuesOverTheMaximumNamingIt) {
  EXPECT_THAT(rejected("2s", kS), HasSubstr("must be at most 1s"));
  EXPECT_THAT(rejected("1s1ns", kS), HasSubstr("'1s1ns'"));
  EXPECT_THAT(rejected("99999999999999999999d"), HasSubstr("must be at most"));
  EXPECT_THAT(rejected("106752d"), HasSubstr("must be at most"));  // just over 2^63 ns
  EXPECT_EQ(parsed("1s", kS), kS);
}

TEST(ParseDurationTest, AcceptsBareZeroAndZeroWithUnit) {
  EXPECT_EQ(parsed("0"), 0);
  EXPECT_EQ(parsed("0s"), 0);
  EXPECT_EQ(parsed("0.0ms"), 0);
}

TEST(ParseDurationTest, AcceptsEachUnit) {
  EXPECT_EQ(parsed("7ns"), 7);
  EXPECT_EQ(parsed("10us"), 10'000);
  EXPECT_EQ(parsed("250ms"), 250 * kMs);
  EXPECT_EQ(parsed("2s"), 2 * kS);
  EXPECT_EQ(parsed("1m"), 60 * kS);
  EXPECT_EQ(parsed("1h"), 3600 * kS);
  EXPECT_EQ(parsed("1d"), 86400 * kS);
}

TEST(ParseDurationTest, AcceptsFractionsAndCompounds) {
  EXPECT_EQ(parsed("1.5s"), 1500 * kMs);
  EXPECT_EQ(parsed(".25s"), 250 * kMs);
  EXPECT_EQ(parsed("1.s"), kS);
  EXPECT_EQ(parsed("1.5m"), 90 * kS);
  EXPECT_EQ(parsed("0.000000001s"), 1);
  EXPECT_EQ(parsed("1h30m"), 5400 * kS);
  EXPECT_EQ(parsed("1s500ms"), 1500 * kMs);
  EXPECT_EQ(parsed("2d1h1m1s1ms1us1ns"), 2 * 86400 * kS + 3661 * kS + kMs + 1'000 + 1);
  EXPECT_EQ(parsed("007s"), 7 * kS);  // leading zeros are decimal
  EXPECT_EQ(parsed("9223372036854775807ns"), INT64_MAX);
}

TEST(DurationTextTest, PrintsTheShortestExactForm) {
  EXPECT_EQ(duration_text(0), "0");
  EXPECT_EQ(duration_text(1), "1ns");
  EXPECT_EQ(duration_text(250 * kMs), "250ms");
  EXPECT_EQ(duration_text(1500 * kMs), "1s500ms");
  EXPECT_EQ(duration_text(90 * kS), "1m30s");
  EXPECT_EQ(duration_text(3600 * kS), "1h");
  EXPECT_EQ(duration_text(365 * 86400 * kS), "365d");
}

TEST(DurationTextTest, RoundTripsThroughParseDuration) {
  for (const std::int64_t ns : {std::int64_t{1}, std::int64_t{999}, 1001 * kMs, 59 * kS, 61 * kS, 86399 * kS + 1,
                                std::int64_t{4294967295} * kMs, INT64_MAX}) {
    EXPECT_EQ(parsed(duration_text(ns)), ns) << duration_text(ns);
  }
}

}  // namespace
