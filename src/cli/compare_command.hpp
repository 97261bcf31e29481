// `moe-bench compare FILE...`: one row per (results file, strategy) from results JSON alone, as an
// aligned table, markdown, csv, json or a self-contained HTML page. One process, no MPI start-up.
#pragma once
#include "cli/command.hpp"

namespace moe {

Command add_compare_command(CLI::App& app);

}  // namespace moe
