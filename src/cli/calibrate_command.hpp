// `moe-bench calibrate`: measure this machine (CPU backend + MPI, under mpirun) on a config's
// shapes and write a hardware profile for `moe-bench simulate --hardware`.
#pragma once
#include "cli/command.hpp"

namespace moe {

Command add_calibrate_command(CLI::App& app);

}  // namespace moe
