// `moe-bench simulate`: predict every strategy of a config (or a sweep of cluster sizes) in one
// process from the cost model, the time model and a hardware profile; results JSON in mode "simulated".
#pragma once
#include "cli/command.hpp"

namespace moe {

Command add_simulate_command(CLI::App& app);

}  // namespace moe
