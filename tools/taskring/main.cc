// taskring: the command-line tool for operators. Creates and destroys
// segments, shows their status, submits and inspects tasks, manages dead
// letters, and runs workers. docs/cli.md documents every command, flag and exit status.
//
// Exit statuses: 0 success; 1 a runtime failure; 2 a usage error (bad flag
// or value); 3 submit --wait saw a task fail, be cancelled or time out.

#include <cstdio>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>

#include "common.h"
#include "log_commands.h"
#include "segment_commands.h"
#include "sidecar_command.h"
#include "task_commands.h"
#include "worker_command.h"

#ifndef TASKRING_VERSION
#define TASKRING_VERSION "unknown"
#endif

int main(int argc, char** argv) {
  using namespace taskring::cli;

  CLI::App app{"taskring: a lock-free shared-memory task engine", "taskring"};
  app.set_version_flag("--version", "taskring " TASKRING_VERSION);
  app.require_subcommand(1);
  app.footer("Run 'taskring COMMAND --help' for a command's flags. Documentation: docs/cli.md\n");

  Action action;
  add_segment_commands(app, action);
  add_task_commands(app, action);
  add_worker_command(app, action);
  add_log_commands(app, action);
  add_sidecar_command(app, action);

  if (argc <= 1) {
    std::fputs(app.help().c_str(), stderr);
    return kExitUsage;
  }
  if (auto exit_now = parse_command_line(app, argc, argv, "taskring")) return *exit_now;
  if (!action) {
    print_error({}, "no command given", "run 'taskring --help' for the commands");
    return kExitUsage;
  }
  try {
    return action();
  } catch (const std::exception& e) {
    // Allocation failure or a bug below us: still an error line, not a core dump.
    print_error({}, std::string("unexpected failure: ") + e.what());
    return kExitFailure;
  }
}
