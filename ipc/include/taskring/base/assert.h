// TASKRING_ASSERT: bugs are not errors. A violated invariant aborts with the
// condition, file and line, in every build type.
//
// Thread safety: the macro is safe from any thread.
#pragma once

namespace taskring::detail {
[[noreturn]] void assert_fail(const char* condition, const char* file, int line) noexcept;
}  // namespace taskring::detail

#define TASKRING_ASSERT(cond)                                                  \
  do {                                                                         \
    if (__builtin_expect(!(cond), 0))                                          \
      ::taskring::detail::assert_fail(#cond, __FILE__, __LINE__);              \
  } while (0)
