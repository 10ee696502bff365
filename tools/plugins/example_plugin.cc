// An example handler plugin for `taskring worker --plugin`: registers the
// handler "upper", whose result is its payload with ASCII letters
// upper-cased.
//
// A plugin is a shared object exporting
//   extern "C" void taskring_register_handlers(taskring::HandlerRegistry&);
// It is built against the taskring headers only and does not link
// taskring::engine: the engine functions it calls (TaskContext::set_result)
// resolve against the taskring executable that loads it, so both use the
// one engine in the process.
//
// Thread safety: the handler keeps no state; the worker runs it on one thread.

#include <cctype>
#include <string>

#include "taskring/worker.h"

namespace {

void upper(taskring::TaskContext& ctx) {
  std::string out(ctx.payload());
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  ctx.set_result(out);
}

}  // namespace

extern "C" __attribute__((visibility("default"))) void taskring_register_handlers(
    taskring::HandlerRegistry& registry) {
  // A failure (the name is taken) is reported by the loader, which sees
  // every registration through the registry.
  (void)registry.register_handler("upper", upper);
}
