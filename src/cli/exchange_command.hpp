// `moe-bench exchange` (under mpirun): times one all-to-all of a given byte matrix three ways on
// the CPU backend: MPI_Alltoallv, and the posted per-peer transfers the ep strategy uses (completed
// at once, and source by source): the reference for the dispatch and combine times of a run.
#pragma once
#include "cli/command.hpp"

namespace moe {

Command add_exchange_command(CLI::App& app);

}  // namespace moe
