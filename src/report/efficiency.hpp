// The "efficiency" entry of a measured strategy: the cost model's FLOPs, HBM and link bytes of a prefill
// and a decode step over the measured times, against the config's peaks (cost/roofline.hpp), with the
// backend's FLOP counter next to the model's as a cross-check.
#pragma once
#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "placement/placement.hpp"
#include "topology/topology.hpp"

namespace moe {

// [L][G][E] assignments per source rank and expert summed over an iteration's steps.
using SourceCounts = std::vector<std::vector<std::vector<int64_t>>>;

// chosen - dropped, element by element (both [L][G][E], e.g. CheckedRouting's *_by_source); empty
// when chosen is empty.
SourceCounts kept_assignments(const SourceCounts& chosen, const SourceCounts& dropped);

// prefill_s: mean prefill time; decode_step_s: mean decode-step time (both max over ranks);
// measured_flops_per_iteration: the backend's counter summed over ranks, per measured iteration.
// `placement` is the plan an ep strategy ran with (ignored for tp_pp); elem_bytes the compute dtype's size.
// `kept_by_source` (ep): the run's kept assignments per source rank and expert over one iteration;
// the ep cost then uses them (as the same mix of experts per local token in every step) instead of
// uniform routing. Empty: uniform.
nlohmann::ordered_json efficiency_json(const Config& config, const StrategyConfig& spec, const Topology& topo, int world_size,
                                       int elem_bytes, const Placement& placement, double prefill_s, double decode_step_s,
                                       double measured_flops_per_iteration, const SourceCounts& kept_by_source = {});

}  // namespace moe
