// `moe-bench selftest`: check every kernel and collective of a GPU backend against the CPU
// backend, under mpirun.
#pragma once
#include "cli/command.hpp"

namespace moe {

Command add_selftest_command(CLI::App& app);

}  // namespace moe
