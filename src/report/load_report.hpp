// The `load` and `routing` sections of a strategy's results JSON, from the routing records of its
// checked pass (runner/checked_routing.hpp).
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "routing/routing_source.hpp"
#include "runner/checked_routing.hpp"

namespace moe {

// `load` section: per layer tokens per expert, balancedness, cv, dropped, tokens per GPU (and per
// source rank and expert for ep); balancing windows (balancedness per update window and the
// multipliers after it, replaying the policy on the counted windows); dropped and balancedness per step.
nlohmann::ordered_json load_json(const CheckedRouting& r, const LoadBalancingConfig& lb);

// `routing` section: the workload's routing source, the trace (inline when recorded) and its digest,
// and whether every choice equals the reference's (empty: not checked).
nlohmann::ordered_json routing_json(const RoutingSource& source, const CheckedRouting& r,
                                    std::optional<bool> choices_match_reference);

}  // namespace moe
