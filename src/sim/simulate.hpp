// Simulated results: every strategy of a config through the cost model and the time model, written
// in the results JSON schema (context.mode "simulated"), with memory feasibility, what fits, and
// cluster-size sweeps.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "routing/routing_source.hpp"
#include "sim/hardware.hpp"

namespace moe {

struct SimulateOptions {
  HardwareProfile hardware;
  ExpectedRouting routing;          // empty: from workload.routing (sim/assumed_routing.hpp)
  std::shared_ptr<const RoutingTrace> trace;  // workload.routing "trace:...": the recorded routing (null: uniform)
  std::string backend = "cuda";     // modeled backend: cuda (model dtype) or cpu (fp32)
  std::vector<std::string> argv;
  bool feasible_variant = true;     // when a strategy does not fit, also simulate the largest prompt that fits
};

// Element size the modeled backend computes in.
int simulated_elem_bytes(const Config& c, const std::string& backend);

// One strategy entry (same keys as the runner's, plus roofline, overlap and feasibility).
nlohmann::ordered_json simulate_strategy(const Config& c, const StrategyConfig& s, const SimulateOptions& o);

// The whole results document for a config.
nlohmann::ordered_json simulate_config(const Config& c, const SimulateOptions& o);

// Largest batch_sequences (a multiple of the strategy's unit, at the config's prompt) and largest
// prompt_tokens (at the config's batch) whose per-rank memory estimate fits; 0 when none does.
int64_t largest_batch_that_fits(const Config& c, const StrategyConfig& s, int elem_bytes);
int64_t largest_prompt_that_fits(const Config& c, const StrategyConfig& s, int elem_bytes);

// The config scaled to `ranks` GPUs: nodes = ranks / gpus_per_node (one partial node when smaller);
// ep strategies get ep = ranks, tp_pp strategies tp = gpus_per_node and pp = ranks / tp. Strategies
// that cannot be laid out (layers not divisible by pp, batch not divisible by ep, ...) are removed and
// explained in `notes`.
Config scale_config(const Config& c, int ranks, std::vector<std::string>& notes);

// One results document per ranks value (each with "sweep_point": {ranks, nodes, notes}).
nlohmann::ordered_json simulate_sweep(const Config& c, const std::vector<int>& ranks, const SimulateOptions& o);

// Console renderings.
void print_simulated(std::ostream& out, const nlohmann::ordered_json& results);
void print_sweep(std::ostream& out, const nlohmann::ordered_json& sweep);

}  // namespace moe
