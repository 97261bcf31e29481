// The routing a simulation assumes for a strategy, from workload.routing: uniform for the gate (its
// choice is not known before a run), a synthetic distribution's expected assignments per source rank
// and step, or a recorded trace's exact counts per source rank and step.
#pragma once
#include <string>
#include <vector>

#include "core/config.hpp"
#include "cost/cost_model.hpp"
#include "routing/routing_source.hpp"

namespace moe {

struct AssumedRouting {
  ExpectedRouting routing;          // expert_share for tp_pp (and the load summary); per-source assignments for ep
  std::string name;                 // short: "uniform", "synthetic zipf:1.2,local:0.5", "trace FILE"
  std::string description;          // how the counts were derived
  std::vector<std::string> notes;   // where the prediction's routing differs from a run's
  bool dropped_known = false;       // `dropped` holds the expected capacity drops of one iteration
  double dropped = 0;
};

// `trace`: the recorded routing when workload.routing is "trace:..." (null: not loaded, uniform is
// assumed and a note says so).
// Distribution: per step (prefill 0, decode step t: t + 1) the expected assignments per local token of
// each source rank, profile_from_distribution (its shares, local:p by the source's node, capped at
// 1/top_k per expert) at the step's drift epoch; with a capacity, kept in global token order (lower
// ranks first), as the ep runtime drops. Trace: every step's choices counted per source rank
// (sequence s belongs to rank s / (batch / ep)), the capacity applied assignment by assignment in
// global token order: the runtime's exact kept counts.
AssumedRouting assumed_routing(const Config& c, const StrategyConfig& s, const RoutingTrace* trace);

}  // namespace moe
