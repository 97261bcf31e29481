// moe-bench command line: `run` (measure every strategy of a config under mpirun) and `validate`
// (check a config without running). Errors print once with their JSON path and exit non-zero on
// every rank; unexpected failures on one rank abort the whole job so no rank is left waiting.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>

#include "backend/factory.hpp"
#include "cli/calibrate_command.hpp"
#include "cli/command.hpp"
#include "cli/compare_command.hpp"
#include "cli/exchange_command.hpp"
#include "cli/place_command.hpp"
#include "cli/simulate_command.hpp"
#include "core/atomic_file.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/mpi_session.hpp"
#include "core/watchdog.hpp"
#include "cost/memory.hpp"
#include "placement/load_profile.hpp"
#include "placement/plan_json.hpp"
#include "placement/strategy_plan.hpp"
#include "report/results.hpp"
#include "routing/routing_source.hpp"
#include "runner/progress.hpp"
#include "runner/run_validation.hpp"
#include "runner/runner.hpp"
#include "topology/topology.hpp"

namespace {

using namespace moe;

struct RunArgs {
  std::string config_path;
  std::string out_path;
  std::string backend;       // empty: from config
  int iterations = 0;        // 0: from config
  bool no_verify = false;
  std::string dump_dir;
  std::string trace_path;
  std::vector<std::string> plans;   // [NAME=]FILE
  double timeout_s = -1;     // < 0: from config
  bool keep_partial = false;
  bool quiet = false;        // no progress line
};

// Rank 0's record of a run in progress for --keep-partial: when the run fails or is interrupted
// where rank 0 sees it (its own error, its watchdog, a signal), an abort hook writes the
// strategies completed so far with "status": "failed" and the reason.
struct PartialRun {
  std::mutex mu;
  bool armed = false;
  std::string out_path;
  RunContext ctx;
  Config config;   // a copy: the hook may run after cmd_run has unwound
  nlohmann::ordered_json completed = nlohmann::ordered_json::array();

  void write(const std::string& reason) {
    std::lock_guard<std::mutex> lock(mu);
    if (!armed) return;
    armed = false;
    RunContext failed = ctx;
    failed.status = "failed";
    failed.failure_reason = reason;
    write_file_atomic(out_path, make_failed_results(failed, config, completed, compare_strategies(completed)).dump(2) + "\n");
    std::cerr << "moe-bench: partial results (status \"failed\", " << completed.size() << " completed strategies) written to "
              << out_path << std::endl;
  }
};
PartialRun g_partial;

struct ValidateArgs {
  std::string config_path;
  int ranks = 0;             // 0: cluster.nodes * gpus_per_node
  std::string backend;       // empty: from config
};

// Rank 0 reads the file and every rank gets its text, so every rank parses the same input and
// raises the same error. `where` names the option or JSON path in the error.
std::string read_text_everywhere(const MpiSession& mpi, const std::string& path, const std::string& where,
                                 const std::string& what) {
  std::string text, error;
  if (mpi.rank() == 0) {
    std::ifstream in(path);
    if (!in) {
      error = "cannot open " + what + " '" + path + "'";
    } else {
      std::ostringstream ss;
      ss << in.rdbuf();
      text = ss.str();
    }
  }
  error = mpi.broadcast_string(error);
  if (!error.empty()) throw ConfigError(where, error);
  return mpi.broadcast_string(text);
}

Config load_config_everywhere(const MpiSession& mpi, const std::string& path) {
  return parse_config_text(read_text_everywhere(mpi, path, "", "config file"), path);
}

nlohmann::json parse_json_text(const std::string& text, const std::string& where, const std::string& path) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw ConfigError(where, "invalid JSON in '" + path + "': " + e.what());
  }
}

// workload.routing as a routing source; a trace is read from its results file.
std::shared_ptr<const RoutingSource> load_routing_source(const MpiSession& mpi, const Config& config) {
  std::string path, strategy;
  if (!parse_trace_spec(config.workload.routing, path, strategy)) return RoutingSource::from_config(config);
  const nlohmann::json results =
      parse_json_text(read_text_everywhere(mpi, path, "workload.routing", "routing trace results file"), "workload.routing", path);
  return RoutingSource::from_trace(config, trace_from_results(results, strategy, path));
}

// --plan [NAME=]FILE: the placement of ep strategy NAME (every ep strategy without NAME=). `paths`
// gets each strategy's plan file and `plan_load` the routing the plan was made for (its load_profile);
// rank 0 says when a plan replaces the configured algorithm.
std::map<std::string, Placement> load_plans(const MpiSession& mpi, const Config& config, const std::vector<std::string>& specs,
                                            std::map<std::string, std::string>& paths,
                                            std::map<std::string, std::pair<LoadProfile, std::string>>& plan_load) {
  std::map<std::string, Placement> plans;
  for (const std::string& spec : specs) {
    const size_t eq = spec.find('=');
    const std::string name = eq == std::string::npos ? "" : spec.substr(0, eq);
    const std::string path = eq == std::string::npos ? spec : spec.substr(eq + 1);
    std::vector<const StrategyConfig*> targets;
    for (const auto& s : config.strategies)
      if (s.kind == "ep" && (name.empty() || s.name == name)) targets.push_back(&s);
    if (targets.empty())
      throw ConfigError("--plan", name.empty() ? "the config has no ep strategy to use plan '" + path + "'"
                                               : "no ep strategy named '" + name + "' in the config");
    const nlohmann::json plan_json = parse_json_text(read_text_everywhere(mpi, path, "--plan", "plan file"), "--plan", path);
    const Placement p = placement_from_json(plan_json, path);
    const int ranks = config.cluster.nodes * config.cluster.gpus_per_node;
    check_plan_shape(p, config.model.layers, config.model.experts, ranks, path);
    // The routing the plan was made for: a distribution, or "results FILE[#strategy]" (place --load-profile).
    const std::string made_for = plan_json.value("load_profile", "");
    std::optional<std::pair<LoadProfile, std::string>> made_for_load;
    const Topology topo = Topology::from_config(config.cluster);
    if (is_routing_distribution(made_for)) {
      made_for_load.emplace(distribution_load_profile(config, made_for, topo, path + ": load_profile"),
                            made_for + " (the plan's load_profile)");
    } else if (made_for.rfind("results ", 0) == 0) {
      // A results file that moved only costs the prediction its input: say so, use the config's routing.
      const std::string spec = made_for.substr(8);
      const size_t hash = spec.rfind('#');
      const std::string file = spec.substr(0, hash);
      try {
        const nlohmann::json results = parse_json_text(
            read_text_everywhere(mpi, file, "--plan", "results file of the plan's load_profile"), "--plan", file);
        made_for_load.emplace(profile_from_results(results, config.model.layers, config.model.experts, topo, file,
                                                   hash == std::string::npos ? "" : spec.substr(hash + 1)),
                              made_for + " (the plan's load_profile)");
      } catch (const ConfigError& e) {
        if (mpi.rank() == 0)
          std::cout << "moe-bench: note: plan '" << path << "' was made for '" << made_for << "', which cannot be used ("
                    << e.what() << "); its traffic prediction uses the config's routing\n";
      }
    }
    for (const StrategyConfig* s : targets) {
      if (!plans.emplace(s->name, p).second)
        throw ConfigError("--plan", "strategy '" + s->name + "' is given more than one plan");
      paths[s->name] = path;
      if (made_for_load) plan_load[s->name] = *made_for_load;
      if (mpi.rank() == 0)
        std::cout << "moe-bench: strategy '" << s->name << "' runs with the " << p.algorithm << " placement of plan '" << path
                  << "'" << (p.algorithm != s->placement ? " (the config says " + s->placement + ")" : std::string()) << "\n";
    }
  }
  return plans;
}

// An output location that cannot be written must fail before any measuring, on every rank: a
// results path that is a directory or in a missing/unwritable directory; a dump directory is
// created (with its parents) when missing.
void check_writable_dir(const MpiSession& mpi, const std::string& file_or_dir, bool is_dir, const std::string& option) {
  std::string error;
  if (mpi.rank() == 0 && !file_or_dir.empty()) {
    std::error_code ec;
    if (is_dir && !std::filesystem::is_directory(file_or_dir, ec)) {
      std::filesystem::create_directories(file_or_dir, ec);
      if (ec) error = "cannot create directory '" + file_or_dir + "': " + ec.message();
    } else if (!is_dir && std::filesystem::is_directory(file_or_dir, ec)) {
      error = "'" + file_or_dir + "' is a directory; give a file path, e.g. " +
              (std::filesystem::path(file_or_dir) / "results.json").string();
    }
    if (error.empty()) {
      const std::string probe = is_dir ? file_or_dir + "/.moe-bench-write-test" : file_or_dir + ".moe-bench-write-test";
      std::ofstream f(probe);
      if (!f) error = "cannot write to '" + file_or_dir + "' (does the directory exist?)";
      f.close();
      std::remove(probe.c_str());
    }
  }
  error = mpi.broadcast_string(error);
  if (!error.empty()) throw ConfigError(option, error);
}

int cmd_run(MpiSession& mpi, const RunArgs& a, const std::vector<std::string>& argv) {
  // Bounded from the first collective on (the config broadcast), by the default until the config is read.
  watchdog::start(a.timeout_s >= 0 ? a.timeout_s : RunConfig{}.timeout_s, mpi.rank());
  Config config = load_config_everywhere(mpi, a.config_path);
  if (!a.backend.empty()) config.run.backend = a.backend;
  if (a.iterations > 0) config.run.iterations = a.iterations;
  if (a.no_verify) config.run.verify = false;
  if (a.timeout_s >= 0) config.run.timeout_s = a.timeout_s;
  validate_config(config);
  check_writable_dir(mpi, a.out_path, false, "--out");
  check_writable_dir(mpi, a.dump_dir, true, "--dump-outputs");
  check_writable_dir(mpi, a.trace_path, false, "--trace");
  watchdog::start(config.run.timeout_s, mpi.rank());
  arm_fault_from_environment(mpi.rank());  // test only; a malformed MOE_FAULT is a ConfigError on every rank

  Backends backends = make_backends(config.run.backend, config.model.dtype, config.run.emulate_dtype);
  ComputeBackend& compute = *backends.compute;
  validate_for_run(config, mpi.size(), dtype_bytes(compute.dtype()), compute.name());
  if (mpi.rank() == 0 && !backends.notice.empty()) std::cout << "moe-bench: " << backends.notice << "\n";

  RunOptions options;
  options.verify = config.run.verify;
  options.dump_dir = a.dump_dir;
  options.trace = !a.trace_path.empty();
  options.routing = load_routing_source(mpi, config);
  options.plans = load_plans(mpi, config, a.plans, options.plan_paths, options.plan_load);
  Progress progress(std::cerr, progress_options_for(mpi.rank(), a.quiet));
  options.progress = &progress;

  RunContext ctx;
  ctx.backend = compute.name();
  ctx.compute_dtype = dtype_name(compute.precision());
  ctx.world_size = mpi.size();
  ctx.hosts = mpi.all_host_names();
  ctx.devices = {compute.device_description()};
  ctx.mpi = mpi.library_version();
  ctx.argv = argv;
  ctx.notice = backends.notice;
  ctx.runtime_json = backends.runtime_json;
  ctx.environment = relevant_environment();
  int partial_hook = -1;
  if (mpi.rank() == 0 && a.keep_partial && !a.out_path.empty()) {
    std::lock_guard<std::mutex> lock(g_partial.mu);
    g_partial.armed = true;
    g_partial.out_path = a.out_path;
    g_partial.ctx = ctx;
    g_partial.config = config;
    options.on_strategy_done = [](const nlohmann::ordered_json& s) {
      std::lock_guard<std::mutex> lock(g_partial.mu);
      g_partial.completed.push_back(s);
    };
    partial_hook = watchdog::add_abort_hook([](const std::string& reason) { g_partial.write(reason); });
  }
  const RunOutcome outcome = run_strategies(config, options, compute, *backends.world);
  progress.finish();
  if (partial_hook >= 0) {
    watchdog::remove_abort_hook(partial_hook);
    std::lock_guard<std::mutex> lock(g_partial.mu);
    g_partial.armed = false;
  }

  if (mpi.rank() == 0) {
    const auto results = make_results(ctx, config, outcome.strategies, compare_strategies(outcome.strategies));
    print_table(std::cout, results);
    if (!a.out_path.empty()) {
      write_file_atomic(a.out_path, results.dump(2) + "\n");
      std::cout << "\nresults written to " << a.out_path << "\n";
    }
    if (!a.trace_path.empty()) {
      write_file_atomic(a.trace_path, outcome.trace.dump() + "\n");
      std::cout << "trace written to " << a.trace_path << " (open in Perfetto or chrome://tracing)\n";
    }
    if (!outcome.all_verified) std::cerr << "moe-bench: verification FAILED (see verification in the results)\n";
  }
  return outcome.all_verified ? 0 : 3;
}

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

int cmd_validate(const MpiSession& mpi, const ValidateArgs& a) {
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

  RunArgs run;
  CLI::App* run_cmd = app.add_subcommand("run", "Run every strategy of a config under mpirun, verify, write results JSON");
  run_cmd->add_option("-c,--config", run.config_path, "Config JSON (model, workload, cluster, strategies, run)")->required();
  run_cmd->add_option("-o,--out", run.out_path, "Results JSON path (written atomically by rank 0)");
  run_cmd->add_option("--backend", run.backend, "Override run.backend: auto | cpu | cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  run_cmd->add_option("--iterations", run.iterations, "Override run.iterations (measured prefill+decode iterations)")
      ->check(moe::positive_integer());
  run_cmd->add_flag("--no-verify", run.no_verify, "Skip the comparison against the single-rank reference");
  run_cmd->add_flag("-q,--quiet", run.quiet,
                    "No progress line (rank 0 prints one to stderr after 3 s: in place on a terminal, else every 10 s)");
  run_cmd->add_option("--dump-outputs", run.dump_dir,
                      "Directory for .npy dumps of the reference's and each strategy's prefill and decode outputs");
  run_cmd->add_option("--trace", run.trace_path,
                      "Write a Chrome trace (per rank and stream, every stage of the first measured iteration)");
  run_cmd->add_option("--timeout-s", run.timeout_s,
                      "Override run.timeout_s: seconds a rank may wait in one communication call before the job is "
                      "aborted with a message naming the phase and the ranks waited for; 0 disables")
      ->check(CLI::Range(0.0, moe::kMaxTimeoutS));
  run_cmd->add_flag("--keep-partial", run.keep_partial,
                    "When the run fails or is interrupted, write the strategies completed so far to --out with "
                    "\"status\": \"failed\" and the reason (default: write nothing)");
  run_cmd->add_option("--plan", run.plans,
                      "[NAME=]FILE: run ep strategy NAME (every ep strategy without NAME=) with the placement in FILE "
                      "(written by `place`); repeatable");

  ValidateArgs val;
  CLI::App* val_cmd = app.add_subcommand("validate", "Check a config without running (no mpirun needed)");
  val_cmd->add_option("-c,--config", val.config_path, "Config JSON")->required();
  val_cmd->add_option("--ranks", val.ranks,
                      "The rank count of the planned launch (mpirun -np N / Slurm tasks); a run needs N = cluster.nodes "
                      "x cluster.gpus_per_node, which is the default")
      ->check(moe::positive_integer());
  val_cmd->add_option("--backend", val.backend, "Override run.backend: auto | cpu | cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));

  std::string selftest_backend = "cuda";
  CLI::App* self_cmd = app.add_subcommand(
      "selftest", "Check every kernel and collective of a GPU backend against the CPU backend (run under mpirun)");
  self_cmd->add_option("--backend", selftest_backend, "Backend to check (cuda)")->check(CLI::IsMember({"cuda"}));

  // Further subcommands register here: commands.push_back(add_xxx_command(app));
  std::vector<moe::Command> commands;
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

  try {
    if (*run_cmd) return cmd_run(mpi, run, args);
    if (*val_cmd) return cmd_validate(mpi, val);
    if (*self_cmd) return moe::run_backend_selftest(selftest_backend, std::cout);
    for (auto& c : commands)
      if (*c.app) return c.run(mpi, args);
  } catch (const moe::ConfigError& e) {
    // Raised identically on every rank (deterministic input checks): report once, exit together.
    if (mpi.rank() == 0) std::cerr << "moe-bench: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    const std::string message = "[rank " + std::to_string(mpi.rank()) + "] moe-bench: error: " + e.what();
    // Peers may be inside a collective: end the job (after rank 0's --keep-partial hook, if any).
    if (mpi.size() > 1 || *run_cmd) moe::watchdog::abort_job(message, 1);
    std::cerr << message << std::endl;
    return 1;
  }
  return 0;
}
