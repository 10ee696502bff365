// What the in-process baselines (moodycamel, tbb) share: opening a producer
// or worker port over queues that prepare() made, with the same checks and
// errors.
//
// Thread safety: a function of its arguments.
#pragma once

#include <exception>
#include <memory>
#include <string>
#include <utility>

#include "load.h"

namespace taskring::bench {

// Makes a `Port` (constructed from `args`) as a `Base` port, for the
// `role` ("producer" or "worker") number `index` of `count`. Errors:
// kFailedPrecondition before prepare(), kInvalidArgument for an index out of
// range, kResourceExhausted when constructing the port throws.
template <typename Base, typename Port, typename... Args>
Result<std::unique_ptr<Base>> open_in_process_port(bool prepared, const std::string& role, std::uint32_t index,
                                                   std::size_t count, Args&&... args) {
  if (!prepared) return failed_precondition("open_" + role + " before prepare");
  if (index >= count) {
    return invalid_argument(role + " index " + std::to_string(index) + ": the run has " + std::to_string(count) +
                            " " + role + "s");
  }
  try {
    return std::unique_ptr<Base>(std::make_unique<Port>(std::forward<Args>(args)...));
  } catch (const std::exception& e) {
    return resource_exhausted(role + " port: " + e.what());
  }
}

}  // namespace taskring::bench
