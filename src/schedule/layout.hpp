// What results report of a strategy's layout (`layout`): one function for a run and a simulation, so
// that both describe the same sizes, placement and schedules.
#pragma once
#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "placement/placement.hpp"

namespace moe {

// tp_pp: sizes per rank and pipeline stage 0's schedule (what rank 0 runs); ep: sizes per rank, the
// placement `placement` (the one the ranks run with: expert shards when expert_tp > 1; required for
// ep) and the prefill and decode schedules.
nlohmann::ordered_json strategy_layout(const Config& c, const StrategyConfig& s, const Placement* placement);

}  // namespace moe
