// `moe-bench validate` (see validate_command.hpp).
#include "cli/validate_command.hpp"

#include <iostream>
#include <memory>

#include "backend/factory.hpp"
#include "cli/inputs.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "cost/memory.hpp"
#include "runner/run_validation.hpp"

namespace moe {
namespace {

struct ValidateArgs {
  std::string config_path;
  int ranks = 0;             // 0: cluster.nodes * gpus_per_node
  std::string backend;       // empty: from config
};

// Every strategy that cannot run (memory per rank) is reported, not only the first; checks that
// concern the whole config (world size, the reference) come first.
void validate_each_strategy(const Config& config, int ranks, int bytes, const std::string& backend) {
  Config whole = config;
  whole.strategies.resize(1);
  whole.cluster.gpu.memory_gb = 1e12;  // memory per strategy is checked below, one by one
  validate_for_run(whole, ranks, bytes, backend);  // world size and the reference
  std::vector<std::string> failures;
  for (size_t i = 0; i < config.strategies.size(); ++i) {
    Config one = config;
    one.strategies = {config.strategies[i]};
    one.run.verify = false;
    try {
      validate_for_run(one, ranks, bytes, backend);
    } catch (const ConfigError& e) {
      const std::string path = "strategies[" + std::to_string(i) + "]" +
                               (e.path().rfind("strategies[0]", 0) == 0 ? e.path().substr(13) : std::string());
      failures.push_back(path + ": " + e.reason());
    }
  }
  if (failures.size() == 1) {
    const size_t colon = failures[0].find(": ");
    throw ConfigError(failures[0].substr(0, colon), failures[0].substr(colon + 2));
  }
  if (!failures.empty()) {
    std::string text = std::to_string(failures.size()) + " of " + std::to_string(config.strategies.size()) +
                       " strategies cannot run:";
    for (const std::string& f : failures) text += "\n  " + f;
    throw ConfigError("strategies", text);
  }
}

int run_validate(const MpiSession& mpi, const ValidateArgs& a) {
  Config config = load_config_everywhere(mpi, a.config_path);
  if (!a.backend.empty()) config.run.backend = a.backend;
  validate_config(config);
  const int ranks = a.ranks > 0 ? a.ranks : config.cluster.nodes * config.cluster.gpus_per_node;
  // auto validates as the GPU run it would be on a cluster (model dtype); cpu computes fp32.
  const bool cpu = config.run.backend == "cpu";
  const int bytes = cpu ? 4 : dtype_bytes(parse_dtype(config.model.dtype));
  const std::string backend = cpu ? "cpu" : "cuda";
  validate_each_strategy(config, ranks, bytes, backend);
  load_routing_source(mpi, config);  // a trace must exist and fit the config
  if (mpi.rank() == 0) {
    std::cout << "config '" << config.name << "' is valid for " << ranks << " ranks on backend " << backend << " ("
              << (cpu ? "fp32" : config.model.dtype) << ")";
    if (config.run.backend == "auto")
      std::cout << (cuda_backend_compiled()
                        ? ", as on GPUs; `run` uses cpu (fp32) where a rank has no GPU"
                        : ", as on GPUs; this binary has no CUDA backend, so `run` here uses cpu (fp32): "
                          "validate --backend cpu checks that");
    std::cout << "\n";
    for (const auto& s : config.strategies)
      std::cout << "  " << s.name << " (" << s.kind << "): " << estimate_memory(config, s, ranks, bytes).describe()
                << " per rank\n";
  }
  return 0;
}

}  // namespace

Command add_validate_command(CLI::App& app) {
  auto args = std::make_shared<ValidateArgs>();
  Command c;
  c.app = app.add_subcommand("validate", "Check a config without running (no mpirun needed)");
  c.app->add_option("-c,--config", args->config_path, "Config JSON")->required();
  c.app->add_option("--ranks", args->ranks,
                    "The rank count of the planned launch (mpirun -np N / Slurm tasks); a run needs N = cluster.nodes "
                    "x cluster.gpus_per_node, which is the default")
      ->check(positive_integer());
  c.app->add_option("--backend", args->backend, "Override run.backend: auto | cpu | cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  c.run = [args](MpiSession& mpi, const std::vector<std::string>&) { return run_validate(mpi, *args); };
  return c;
}

}  // namespace moe
