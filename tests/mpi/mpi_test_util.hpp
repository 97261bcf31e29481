// Helpers for MPI tests: build a config from the shipped CPU config plus JSON patches, run every
// strategy through the real runner on the CPU backend, and return the results on rank 0.
#pragma once
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include <mpi.h>
#include <nlohmann/json.hpp>

#include "backend/factory.hpp"
#include "core/config.hpp"
#include "report/strategy_results.hpp"
#include "routing/routing_source.hpp"
#include "runner/run_validation.hpp"
#include "runner/runner.hpp"

namespace moe::testing {

inline int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}
inline int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

inline nlohmann::json load_json(const std::string& relative) {
  std::ifstream in(std::string(MOE_SOURCE_DIR) + "/" + relative);
  return nlohmann::json::parse(in);
}

// What a run reports: every strategy's results entry (rank 0), whether all verified, the trace.
struct RunResults {
  nlohmann::ordered_json strategies = nlohmann::ordered_json::array();
  bool all_verified = true;
  nlohmann::ordered_json trace;
};

// run_strategies on `b`, with its measurements written as results entries (as `run` writes them).
inline RunResults run_and_report(const Config& c, const RunOptions& o, Backends& b) {
  RunOutcome out = run_strategies(c, o, *b.compute, *b.world);
  return {strategies_results(c, *o.routing, out.strategies), out.all_verified, std::move(out.trace)};
}

// Runs `cfg_json` (validated for this world size) and returns the strategies array on rank 0.
// `trace` replays a recorded trace (workload.routing must then be "trace:..."); `plans` are
// placements from plan files per ep strategy name.
inline RunResults run_json(const nlohmann::json& cfg_json, const std::string& dump_dir = "",
                           const RoutingTrace* trace = nullptr, std::map<std::string, Placement> plans = {}) {
  Config c = parse_config(cfg_json);
  validate_for_run(c, world_size(), 4, "cpu");
  Backends b = make_backends("cpu", c.model.dtype, c.run.emulate_dtype);
  RunOptions o;
  o.verify = true;
  o.dump_dir = dump_dir;
  o.routing = trace ? RoutingSource::from_trace(c, *trace) : RoutingSource::from_config(c);
  o.plans = std::move(plans);
  return run_and_report(c, o, b);
}

// A load_balancing block: `policy`, a window of 8 tokens, and `capacity` (0: none).
inline nlohmann::json balancing(const std::string& policy, double capacity = 0) {
  return {{"policy", policy}, {"update_interval_tokens", 8}, {"capacity_factor", capacity}};
}

// A small model on `nodes x gpus` ranks with the given strategies.
inline nlohmann::json small_config(int nodes, int gpus, int experts, int heads, int batch, nlohmann::json strategies) {
  nlohmann::json j = load_json("configs/cpu-4rank.json");
  j["name"] = "mpi-test";
  j["model"]["experts"] = experts;
  j["model"]["heads"] = heads;
  j["model"]["head_dim"] = 16;
  j["model"]["hidden"] = 96;
  j["model"]["ffn_hidden"] = 192;
  j["model"]["layers"] = 2;
  j["workload"]["batch_sequences"] = batch;
  j["workload"]["prompt_tokens"] = 6;
  j["workload"]["decode_steps"] = 3;
  j["cluster"]["nodes"] = nodes;
  j["cluster"]["gpus_per_node"] = gpus;
  j["strategies"] = std::move(strategies);
  j["run"]["iterations"] = 1;
  return j;
}

}  // namespace moe::testing
