// Creating and destroying segments.
//
// Thread safety: the functions are safe from any thread; creating and
// destroying the same segment name concurrently is a race the caller avoids.
#pragma once

#include <string_view>

#include "taskring/base/status.h"
#include "taskring/options.h"

namespace taskring {

// Creates segment `name` laid out for `config` (validated first). With
// `replace`, an existing segment of that name is removed first; otherwise
// kAlreadyExists. Errors also: kInvalidArgument, kInternal.
Status create_segment(std::string_view name, const EngineConfig& config, bool replace = false);

// Marks segment `name` closing (running workers return from run(), waiting
// producers fail), wakes every waiter, then removes the name. Errors:
// kNotFound, kPermissionDenied, kInvalidArgument (name). A segment that
// fails validation (other layout version, corrupt) is removed without the
// closing handshake: no process of this build can be using it.
Status destroy_segment(std::string_view name);

// Asks every worker attached to segment `name` now to stop claiming, finish
// its running task and return from run() (Worker::drained() is then true);
// workers that attach later run normally. Supervisors (taskring worker
// --processes) do not replace drained workers. Errors: attach's.
Status drain_segment(std::string_view name);

}  // namespace taskring
