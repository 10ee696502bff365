// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI and
// ext4: the checksum of every log record and file header.
//
// Two implementations of one function: the SSE 4.2 `crc32` instruction,
// 8 bytes per instruction, chosen at run time when the CPU has it; and
// slicing-by-8 over eight 256-entry tables (8 KiB, built at compile time),
// which consumes 8 bytes per step with 8 table look-ups. Both take the seed
// as a previous result, so crc32c(b, crc32c(a)) == crc32c(a + b).
#include <cstdint>
#include <string_view>

#include "log_internal.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#define TASKRING_CRC32C_X86 1
#endif

namespace taskring::log {
namespace internal {
namespace {

constexpr std::uint32_t kPolynomial = 0x82F63B78;  // 0x1EDC6F41 bit-reversed

struct Tables {
  std::uint32_t t[8][256];
};

// t[0] is the classic byte-at-a-time table; t[k][i] is the CRC of byte i
// followed by k zero bytes, which is what slicing-by-8 combines.
constexpr Tables make_tables() {
  Tables tables{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) != 0 ? kPolynomial : 0u);
    tables.t[0][i] = crc;
  }
  for (int k = 1; k < 8; ++k) {
    for (std::uint32_t i = 0; i < 256; ++i) {
      const std::uint32_t prev = tables.t[k - 1][i];
      tables.t[k][i] = (prev >> 8) ^ tables.t[0][prev & 0xFFu];
    }
  }
  return tables;
}

constexpr Tables kTables = make_tables();

}  // namespace

std::uint32_t crc32c_portable(std::string_view bytes, std::uint32_t seed) noexcept {
  const char* p = bytes.data();
  std::size_t n = bytes.size();
  std::uint32_t crc = ~seed;
  const auto& t = kTables.t;
  while (n >= 8) {
    const std::uint64_t v = load_u64(p) ^ crc;
    crc = t[7][v & 0xFF] ^ t[6][(v >> 8) & 0xFF] ^ t[5][(v >> 16) & 0xFF] ^ t[4][(v >> 24) & 0xFF] ^
          t[3][(v >> 32) & 0xFF] ^ t[2][(v >> 40) & 0xFF] ^ t[1][(v >> 48) & 0xFF] ^ t[0][v >> 56];
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    crc = (crc >> 8) ^ t[0][(crc ^ static_cast<unsigned char>(*p)) & 0xFFu];
    ++p;
    --n;
  }
  return ~crc;
}

#if defined(TASKRING_CRC32C_X86)

__attribute__((target("sse4.2"))) std::uint32_t crc32c_hardware(std::string_view bytes,
                                                                  std::uint32_t seed) noexcept {
  const char* p = bytes.data();
  std::size_t n = bytes.size();
  std::uint64_t crc = ~seed;
  while (n >= 8) {
    crc = _mm_crc32_u64(crc, load_u64(p));
    p += 8;
    n -= 8;
  }
  auto crc32 = static_cast<std::uint32_t>(crc);
  if (n >= 4) {
    crc32 = _mm_crc32_u32(crc32, load_u32(p));
    p += 4;
    n -= 4;
  }
  while (n > 0) {
    crc32 = _mm_crc32_u8(crc32, static_cast<unsigned char>(*p));
    ++p;
    --n;
  }
  return ~crc32;
}

bool crc32c_hardware_available() noexcept {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2") != 0;
}

#else

// No crc32 instruction on this architecture: the same function, portably.
std::uint32_t crc32c_hardware(std::string_view bytes, std::uint32_t seed) noexcept {
  return crc32c_portable(bytes, seed);
}
bool crc32c_hardware_available() noexcept { return false; }

#endif

}  // namespace internal

std::uint32_t crc32c(std::string_view bytes, std::uint32_t seed) noexcept {
  // Decided once; the function-local static costs one load and a branch.
  static const bool hardware = internal::crc32c_hardware_available();
  return hardware ? internal::crc32c_hardware(bytes, seed) : internal::crc32c_portable(bytes, seed);
}

}  // namespace taskring::log
