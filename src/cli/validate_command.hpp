// `moe-bench validate`: check a config without running it (no mpirun needed): every check a run
// makes for the planned rank count and backend, listing every strategy that cannot run, and the
// memory estimate of each strategy per rank.
#pragma once
#include "cli/command.hpp"

namespace moe {

Command add_validate_command(CLI::App& app);

}  // namespace moe
