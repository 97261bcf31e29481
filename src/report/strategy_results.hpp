// A measured strategy's entry of the results JSON (name, kind, layout, prefill, decode, phases_ms, host_ms,
// overlap, traffic, load, routing, memory, efficiency, verification), written from what the runner
// measured.
#pragma once
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "routing/routing_source.hpp"
#include "runner/measurement.hpp"

namespace moe {

nlohmann::ordered_json strategy_results(const Config& config, const RoutingSource& routing, const StrategyMeasurement& m);

// Every strategy's entry, in order: the results document's "strategies".
nlohmann::ordered_json strategies_results(const Config& config, const RoutingSource& routing,
                                          const std::vector<StrategyMeasurement>& measurements);

}  // namespace moe
