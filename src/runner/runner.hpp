// The measurement loop: for every strategy of the config, build it, warm up, run measured
// iterations with per-phase timers, reduce over ranks and run one checked pass (verification
// against the single-rank reference, load counts, optional output dump). It returns what it
// measured (runner/measurement.hpp); report/ writes the results.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.hpp"
#include "core/config.hpp"
#include "placement/placement.hpp"
#include "routing/routing_source.hpp"
#include "runner/measurement.hpp"

namespace moe {

class Progress;

struct RunOptions {
  bool verify = true;
  std::string dump_dir;   // empty: no dump
  std::shared_ptr<const RoutingSource> routing;   // workload.routing, loaded (required)
  std::map<std::string, Placement> plans;         // ep strategy name -> placement from a plan file
  bool trace = false;     // record the stage spans of each strategy's first measured iteration
  // Called on world rank 0 with each strategy's measurement as soon as it is complete (so a
  // failed or interrupted run can still report the strategies that finished).
  std::function<void(const StrategyMeasurement&)> on_strategy_done;
  std::map<std::string, std::string> plan_paths;  // ep strategy name -> that plan file (for the results)
  // ep strategy name -> the routing its plan file was made for (its load_profile), which the traffic
  // prediction then uses instead of the config's: the tokens and their name.
  std::map<std::string, std::pair<LoadProfile, std::string>> plan_load;
  Progress* progress = nullptr;             // the progress line (rank 0); null: none
};

struct RunOutcome {
  std::vector<StrategyMeasurement> strategies;   // on world rank 0, in config order
  bool all_verified = true;   // same on every rank
  nlohmann::ordered_json trace;   // Chrome trace events on world rank 0, when RunOptions::trace
};

// Collective over `world`. Results are complete on world rank 0.
RunOutcome run_strategies(const Config& config, const RunOptions& options, ComputeBackend& compute, Comm& world);

}  // namespace moe
