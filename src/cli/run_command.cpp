// `moe-bench run` (see run_command.hpp). Errors print once with their JSON path and exit non-zero on
// every rank; unexpected failures on one rank abort the whole job so no rank is left waiting.
#include "cli/run_command.hpp"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>

#include "backend/factory.hpp"
#include "cli/inputs.hpp"
#include "core/atomic_file.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/watchdog.hpp"
#include "report/results.hpp"
#include "report/strategy_results.hpp"
#include "runner/progress.hpp"
#include "runner/run_validation.hpp"
#include "runner/runner.hpp"

namespace moe {
namespace {

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
  Config config;   // a copy: the hook may run after run_measurements has unwound
  nlohmann::ordered_json completed = nlohmann::ordered_json::array();   // results entries

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

// The config with the command line's overrides, checked, and the output locations writable.
Config load_run_config(MpiSession& mpi, const RunArgs& a) {
  Config config = load_config_everywhere(mpi, a.config_path);
  if (!a.backend.empty()) config.run.backend = a.backend;
  if (a.iterations > 0) config.run.iterations = a.iterations;
  if (a.no_verify) config.run.verify = false;
  if (a.timeout_s >= 0) config.run.timeout_s = a.timeout_s;
  validate_config(config);
  check_writable_dir(mpi, a.out_path, false, "--out");
  check_writable_dir(mpi, a.dump_dir, true, "--dump-outputs");
  check_writable_dir(mpi, a.trace_path, false, "--trace");
  return config;
}

RunContext run_context(MpiSession& mpi, const Backends& backends, const std::vector<std::string>& argv) {
  RunContext ctx;
  ctx.backend = backends.compute->name();
  ctx.compute_dtype = dtype_name(backends.compute->precision());
  ctx.world_size = mpi.size();
  ctx.hosts = mpi.all_host_names();
  ctx.devices = {backends.compute->device_description()};
  ctx.mpi = mpi.library_version();
  ctx.argv = argv;
  ctx.notice = backends.notice;
  ctx.runtime_json = backends.runtime_json;
  ctx.environment = relevant_environment();
  return ctx;
}

// --keep-partial (rank 0): each strategy's entry is kept as it completes, and an abort hook writes
// them when the run fails. Returns the hook's id, or -1 when not armed.
int arm_partial_results(MpiSession& mpi, const RunArgs& a, const RunContext& ctx, const Config& config, RunOptions& options) {
  if (mpi.rank() != 0 || !a.keep_partial || a.out_path.empty()) return -1;
  std::lock_guard<std::mutex> lock(g_partial.mu);
  g_partial.armed = true;
  g_partial.out_path = a.out_path;
  g_partial.ctx = ctx;
  g_partial.config = config;
  options.on_strategy_done = [routing = options.routing](const StrategyMeasurement& m) {
    std::lock_guard<std::mutex> lock(g_partial.mu);
    g_partial.completed.push_back(strategy_results(g_partial.config, *routing, m));
  };
  return watchdog::add_abort_hook([](const std::string& reason) { g_partial.write(reason); });
}

void disarm_partial_results(int hook) {
  if (hook < 0) return;
  watchdog::remove_abort_hook(hook);
  std::lock_guard<std::mutex> lock(g_partial.mu);
  g_partial.armed = false;
}

// Rank 0: the table, the results file and the trace.
void report_run(const RunArgs& a, const RunContext& ctx, const Config& config, const RunOptions& options,
                const RunOutcome& outcome) {
  const auto strategies = strategies_results(config, *options.routing, outcome.strategies);
  const auto results = make_results(ctx, config, strategies, compare_strategies(strategies));
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

int run_measurements(MpiSession& mpi, const RunArgs& a, const std::vector<std::string>& argv) {
  // Bounded from the first collective on (the config broadcast), by the default until the config is read.
  watchdog::start(a.timeout_s >= 0 ? a.timeout_s : RunConfig{}.timeout_s, mpi.rank());
  const Config config = load_run_config(mpi, a);
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

  const RunContext ctx = run_context(mpi, backends, argv);
  const int partial_hook = arm_partial_results(mpi, a, ctx, config, options);
  const RunOutcome outcome = run_strategies(config, options, compute, *backends.world);
  progress.finish();
  disarm_partial_results(partial_hook);

  if (mpi.rank() == 0) report_run(a, ctx, config, options, outcome);
  return outcome.all_verified ? 0 : 3;
}

}  // namespace

Command add_run_command(CLI::App& app) {
  auto args = std::make_shared<RunArgs>();
  Command c;
  c.app = app.add_subcommand("run", "Run every strategy of a config under mpirun, verify, write results JSON");
  c.app->add_option("-c,--config", args->config_path, "Config JSON (model, workload, cluster, strategies, run)")->required();
  c.app->add_option("-o,--out", args->out_path, "Results JSON path (written atomically by rank 0)");
  c.app->add_option("--backend", args->backend, "Override run.backend: auto | cpu | cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  c.app->add_option("--iterations", args->iterations, "Override run.iterations (measured prefill+decode iterations)")
      ->check(positive_integer());
  c.app->add_flag("--no-verify", args->no_verify, "Skip the comparison against the single-rank reference");
  c.app->add_flag("-q,--quiet", args->quiet,
                  "No progress line (rank 0 prints one to stderr after 3 s: in place on a terminal, else every 10 s)");
  c.app->add_option("--dump-outputs", args->dump_dir,
                    "Directory for .npy dumps of the reference's and each strategy's prefill and decode outputs");
  c.app->add_option("--trace", args->trace_path,
                    "Write a Chrome trace (per rank and stream, every stage of the first measured iteration)");
  c.app->add_option("--timeout-s", args->timeout_s,
                    "Override run.timeout_s: seconds a rank may wait in one communication call before the job is "
                    "aborted with a message naming the phase and the ranks waited for; 0 disables")
      ->check(CLI::Range(0.0, kMaxTimeoutS));
  c.app->add_flag("--keep-partial", args->keep_partial,
                  "When the run fails or is interrupted, write the strategies completed so far to --out with "
                  "\"status\": \"failed\" and the reason (default: write nothing)");
  c.app->add_option("--plan", args->plans,
                    "[NAME=]FILE: run ep strategy NAME (every ep strategy without NAME=) with the placement in FILE "
                    "(written by `place`); repeatable");
  c.run = [args](MpiSession& mpi, const std::vector<std::string>& argv) { return run_measurements(mpi, *args, argv); };
  // An unexpected error ends the job even on one rank: the abort hooks write --keep-partial's results.
  c.ends_job_on_error = true;
  return c;
}

}  // namespace moe
