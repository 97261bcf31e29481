// The placement an ep strategy runs with: its algorithm (topology_aware tuned to the config's NICs)
// applied to the expected routing named by `placement_profile` (uniform when empty).
#pragma once
#include "core/config.hpp"
#include "placement/placement.hpp"

namespace moe {

Placement plan_for_strategy(const Config& c, const StrategyConfig& s, const Topology& topo);

}  // namespace moe
