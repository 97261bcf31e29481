// A CLI subcommand: its CLI11 parser plus the action to run when it was selected. Each command
// lives in its own src/cli/<name>_command.cpp and registers itself in main.cpp.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/mpi_session.hpp"

namespace moe {

struct Command {
  CLI::App* app = nullptr;
  // Returns the process exit code. Throw ConfigError for bad input (raised the same on every rank).
  std::function<int(MpiSession& mpi, const std::vector<std::string>& argv)> run;
};

}  // namespace moe
