// The "efficiency" entry of a measured strategy: the cost model's FLOPs, HBM and link bytes of a prefill
// and a decode step over the measured times, against the config's peaks (cost/roofline.hpp), with the
// backend's FLOP counter next to the model's as a cross-check.
#pragma once
#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "placement/placement.hpp"
#include "topology/topology.hpp"

namespace moe {

// prefill_s: mean prefill time; decode_step_s: mean decode-step time (both max over ranks);
// measured_flops_per_iteration: the backend's counter summed over ranks, per measured iteration.
// `placement` is the plan an ep strategy ran with (ignored for tp_pp); elem_bytes the compute dtype's size.
nlohmann::ordered_json efficiency_json(const Config& config, const StrategyConfig& spec, const Topology& topo, int world_size,
                                       int elem_bytes, const Placement& placement, double prefill_s, double decode_step_s,
                                       double measured_flops_per_iteration);

}  // namespace moe
