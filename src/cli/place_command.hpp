// `moe-bench place`: compute an expert placement for a config (single process), print its expected
// load and link traffic per layer next to round_robin, and write the plan JSON.
#pragma once
#include "cli/command.hpp"

namespace moe {

Command add_place_command(CLI::App& app);

}  // namespace moe
