// A CLI subcommand: its CLI11 parser plus the action to run when it was selected. Each command
// lives in its own src/cli/<name>_command.cpp and registers itself in main.cpp.
#pragma once
#include <climits>
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
  // Whether an unexpected error ends the whole job even with one rank (its abort hooks then run);
  // with more ranks it always does, since peers may wait in a collective.
  bool ends_job_on_error = false;
};

// CLI11 check of a positive int option with a plain message: "--iterations: must be a positive
// integer, got '0'" (CLI::PositiveNumber prints the double range 0 to 1.79e308).
inline CLI::Validator positive_integer() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        try {
          size_t used = 0;
          const long long v = std::stoll(text, &used);
          if (used == text.size() && v > 0 && v <= INT_MAX) return "";
        } catch (const std::exception&) {
        }
        return "must be a positive integer, got '" + text + "'";
      },
      "POSITIVE");
}

}  // namespace moe
