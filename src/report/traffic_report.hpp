// Traffic section of a strategy's results: the bytes counted by the runtime (per link class, per
// NVLink port and NIC, busiest of each) next to what the placement predicts (plan_metrics) for the
// routing it was planned for and for the routing counted in the run.
#pragma once
#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "placement/placement.hpp"
#include "runner/checked_routing.hpp"
#include "topology/topology.hpp"

namespace moe {

// What a placement predicts for one iteration; `placement` null (tp_pp): no prediction.
struct TrafficPrediction {
  const Placement* placement = nullptr;
  LoadProfile planned;          // the expected routing the placement was planned for (empty = uniform)
  std::string planned_spec;     // its name ("" = uniform)
  int64_t bytes_per_row = 0;    // hidden x activation bytes
};

// counted: bytes [src][dst] over `iterations` measured iterations (reported per iteration).
// `checked` supplies the routing counted per source rank and expert (ep) for the second prediction.
nlohmann::ordered_json traffic_json(const Config& c, const Topology& topo, std::vector<std::vector<int64_t>> counted,
                                    int iterations, const TrafficPrediction& prediction, const CheckedRouting& checked);

}  // namespace moe
