// Constants shared by the ipc and engine layers.
//
// Thread safety: constants only.
#pragma once

#include <cstddef>
#include <cstdint>

namespace taskring {

// x86-64 and arm64 cache lines are 64 bytes; adjacent-line prefetch on Intel
// pairs lines, so hot words that different processes write sit 128 bytes apart.
inline constexpr std::size_t kCacheLineSize = 64;
inline constexpr std::size_t kFalseSharingRange = 128;

}  // namespace taskring
