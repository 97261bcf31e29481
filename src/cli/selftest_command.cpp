// `moe-bench selftest` (see selftest_command.hpp); the checks live with the backend they test.
#include "cli/selftest_command.hpp"

#include <iostream>
#include <memory>
#include <string>

#include "backend/factory.hpp"

namespace moe {

Command add_selftest_command(CLI::App& app) {
  auto backend = std::make_shared<std::string>("cuda");
  Command c;
  c.app = app.add_subcommand(
      "selftest", "Check every kernel and collective of a GPU backend against the CPU backend (run under mpirun)");
  c.app->add_option("--backend", *backend, "Backend to check (cuda)")->check(CLI::IsMember({"cuda"}));
  c.run = [backend](MpiSession&, const std::vector<std::string>&) { return run_backend_selftest(*backend, std::cout); };
  return c;
}

}  // namespace moe
