// Helpers for taskring tests: unique segment names, a guard that destroys a
// segment at scope exit, the randomised-test seed, and a start barrier.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>

#include "taskring/admin.h"
#include "taskring/ipc/segment.h"

namespace taskring::testing {

// A segment name unique to this process and test.
inline std::string unique_segment(const std::string& tag) {
  static std::atomic<int> counter{0};
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = "trtest-" + std::to_string(getpid()) + "-" + std::to_string(counter.fetch_add(1)) + "-" + tag;
  if (info != nullptr) name += std::string("-") + info->name();
  for (char& c : name) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) c = '_';
  }
  return name.substr(0, 180);
}

// Removes the segment when the test ends, whatever happened.
class SegmentGuard {
 public:
  explicit SegmentGuard(std::string name) : name_(std::move(name)) {}
  ~SegmentGuard() { (void)ipc::Segment::remove(name_); }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
};

// A count from environment variable `name` (1 .. 1000000), or `fallback`
// when it is unset or empty; any other value fails the test and gives
// `fallback`.
inline int env_count(const char* name, int fallback) {
  const char* s = std::getenv(name);
  if (s == nullptr || *s == '\0') return fallback;
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  if (*end != '\0' || v < 1 || v > 1'000'000) {
    ADD_FAILURE() << name << "=" << s << ": must be an integer between 1 and 1000000";
    return fallback;
  }
  return static_cast<int>(v);
}

// A seed from environment variable `name` (a decimal integer), or a random
// 64-bit one when it is unset or empty; junk after the digits fails the test.
inline std::uint64_t env_seed(const char* name) {
  const char* s = std::getenv(name);
  if (s == nullptr || *s == '\0') {
    std::random_device rd;
    return (std::uint64_t{rd()} << 32) | rd();
  }
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s, &end, 10);
  if (*end != '\0') ADD_FAILURE() << name << "=" << s << ": must be a decimal integer";
  return v;
}

// The seed for a randomised test: TASKRING_TEST_SEED if set, else random.
// Printed through a gtest property and on stderr so a failure can be replayed.
inline std::uint64_t test_seed() {
  const std::uint64_t seed = env_seed("TASKRING_TEST_SEED");
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  std::fprintf(stderr, "[ seed     ] TASKRING_TEST_SEED=%llu\n", static_cast<unsigned long long>(seed));
  return seed;
}

// Releases all threads at once, so a race test really races.
class StartBarrier {
 public:
  explicit StartBarrier(int n) : n_(n) {}
  void arrive_and_wait() {
    arrived_.fetch_add(1, std::memory_order_acq_rel);
    while (arrived_.load(std::memory_order_acquire) < n_) std::this_thread::yield();
  }

 private:
  const int n_;
  std::atomic<int> arrived_{0};
};

// Small sizes so tests are quick and limits are reachable.
inline EngineConfig small_config() {
  EngineConfig c;
  c.slots = 4096;
  c.ring_capacity = 1024;
  c.max_payload = 64 * 1024;
  c.payload_area = 4 << 20;
  c.max_workers = 16;
  c.deque_capacity = 64;
  return c;
}

}  // namespace taskring::testing
