// `moe-bench run`: measure every strategy of a config under mpirun, verify each against the
// single-rank reference, print the table and write the results JSON (and optionally a trace,
// output dumps, or partial results when the run fails).
#pragma once
#include "cli/command.hpp"

namespace moe {

Command add_run_command(CLI::App& app);

}  // namespace moe
