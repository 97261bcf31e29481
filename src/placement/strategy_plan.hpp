// The placement an ep strategy runs with: its algorithm (topology_aware tuned to the config's NICs)
// applied to the expected routing named by `placement_profile` (else workload.routing when that is a
// distribution, else uniform).
#pragma once
#include <string>

#include "core/config.hpp"
#include "placement/placement.hpp"

namespace moe {

// The routing distribution the placement plans for ("" = uniform).
std::string placement_profile_spec(const Config& c, const StrategyConfig& s);
// Its expected tokens per source rank and expert over one iteration (prefill + decode); empty = uniform.
LoadProfile placement_load_profile(const Config& c, const StrategyConfig& s, const Topology& topo);
// The same for a distribution spec (e.g. a plan file's load_profile); `path` names it in errors.
LoadProfile distribution_load_profile(const Config& c, const std::string& spec, const Topology& topo,
                                      const std::string& path);

Placement plan_for_strategy(const Config& c, const StrategyConfig& s, const Topology& topo);

}  // namespace moe
