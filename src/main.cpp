// moe-bench command line: starts MPI (or not, for the one-process commands), parses the options of
// the src/cli commands and runs the one chosen. Bad input (ConfigError) prints once and exits 2 on
// every rank; an unexpected failure on one rank aborts the whole job so no rank is left waiting.
#include <CLI/CLI.hpp>

#include <iostream>
#include <string>
#include <vector>

#include "backend/factory.hpp"
#include "cli/calibrate_command.hpp"
#include "cli/command.hpp"
#include "cli/compare_command.hpp"
#include "cli/exchange_command.hpp"
#include "cli/place_command.hpp"
#include "cli/run_command.hpp"
#include "cli/selftest_command.hpp"
#include "cli/simulate_command.hpp"
#include "cli/validate_command.hpp"
#include "core/error.hpp"
#include "core/mpi_session.hpp"
#include "core/watchdog.hpp"
#include "report/results.hpp"

int main(int argc, char** argv) {
  // place, simulate and compare run in one process: started without a launcher they skip MPI's start-up.
  const std::string first = argc > 1 ? argv[1] : "";
  const bool one_process =
      (first == "place" || first == "simulate" || first == "compare") && !moe::MpiSession::launched_by_mpi_launcher();
  // SIGINT / SIGTERM go to one thread that reports where the run was and ends the job; blocked
  // before MPI starts its threads so that none of them takes the signal.
  moe::watchdog::install_signal_thread();
  moe::MpiSession mpi(&argc, &argv, !one_process);
  struct StopWatchdog {   // before MPI_Finalize (the session's destructor runs after this one)
    ~StopWatchdog() { moe::watchdog::stop(); }
  } stop_watchdog;
  const std::vector<std::string> args(argv, argv + argc);

  CLI::App app{"moe-bench: measure tensor+pipeline parallel vs large expert parallel MoE inference"};
  app.set_version_flag("--version", std::string("moe-bench ") + moe::tool_version() + " (git " + moe::git_sha() + ")" +
                                        (moe::cuda_backend_compiled() ? ", CUDA backend built" : ", CPU backend only"));
  app.require_subcommand(1);

  // Every subcommand is a Command of src/cli, registered here.
  std::vector<moe::Command> commands;
  commands.push_back(moe::add_run_command(app));
  commands.push_back(moe::add_validate_command(app));
  commands.push_back(moe::add_selftest_command(app));
  commands.push_back(moe::add_simulate_command(app));
  commands.push_back(moe::add_calibrate_command(app));
  commands.push_back(moe::add_place_command(app));
  commands.push_back(moe::add_exchange_command(app));
  commands.push_back(moe::add_compare_command(app));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return mpi.rank() == 0 ? app.exit(e) : 0;  // --help, --version
    // Bad options are bad input: exit 2 with the same prefix as every other input error.
    if (mpi.rank() == 0) {
      std::string command, message = e.what();
      for (const CLI::App* sub : app.get_subcommands()) command = " " + sub->get_name();
      if (command.empty() && argc > 1 && argv[1][0] != '-') {  // a mistyped command: name it and the known ones
        message = "unknown command '" + std::string(argv[1]) + "' (commands:";
        for (const CLI::App* sub : app.get_subcommands({})) message += " " + sub->get_name();
        message += ")";
      }
      std::cerr << "moe-bench: error: " << message << " (see moe-bench" << command << " --help)\n";
    }
    return 2;
  }

  const moe::Command* chosen = nullptr;
  for (const auto& c : commands)
    if (*c.app) chosen = &c;
  if (!chosen) return 0;
  try {
    return chosen->run(mpi, args);
  } catch (const moe::ConfigError& e) {
    // Raised identically on every rank (deterministic input checks): report once, exit together.
    if (mpi.rank() == 0) std::cerr << "moe-bench: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    const std::string message = "[rank " + std::to_string(mpi.rank()) + "] moe-bench: error: " + e.what();
    // Peers may be inside a collective: end the job (after rank 0's --keep-partial hook, if any).
    if (mpi.size() > 1 || chosen->ends_job_on_error) moe::watchdog::abort_job(message, 1);
    std::cerr << message << std::endl;
    return 1;
  }
}
