// Helpers for the ipc unit tests: a zeroed heap buffer aligned like a segment
// section, so a Ring, FreeStack or Arena can be tested without a segment, and
// a tiny seeded RNG wrapper.
//
// Thread safety: an AlignedBuffer is created and destroyed by one thread; the
// memory it owns is shared by the test's threads like a mapping would be.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <random>

#include "taskring/ipc/layout.h"

namespace taskring::ipc::test {

// Zero-filled memory aligned to kSectionAlign, as a freshly truncated segment
// section would be.
class AlignedBuffer {
 public:
  explicit AlignedBuffer(std::size_t bytes)
      : size_((bytes + kSectionAlign - 1) / kSectionAlign * kSectionAlign),
        data_(static_cast<std::byte*>(::operator new(size_, std::align_val_t{kSectionAlign}))) {
    std::memset(data_, 0, size_);
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { ::operator delete(data_, std::align_val_t{kSectionAlign}); }

  std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  template <typename T>
  T* as() const noexcept {
    return reinterpret_cast<T*>(data_);
  }

 private:
  std::size_t size_;
  std::byte* data_;
};

// Uniform integer in [lo, hi].
inline std::uint64_t uniform(std::mt19937_64& rng, std::uint64_t lo, std::uint64_t hi) {
  return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng);
}

}  // namespace taskring::ipc::test
