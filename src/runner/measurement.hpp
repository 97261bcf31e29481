// What the runner measures for one strategy, complete on world rank 0: step times (max over ranks),
// per-phase and overlap statistics, counters, memory, the checked pass's routing and the
// verification against the reference. report/strategy_results.hpp writes it as the strategy's
// results entry; nothing here is JSON but the strategy's own layout.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "placement/placement.hpp"
#include "runner/checked_routing.hpp"
#include "schedule/phase.hpp"

namespace moe {

// Mean time per step of one kind (prefill or decode step) in each phase, in ms: the max and the
// mean over ranks. Index kNumPhases is "idle": the step time in no span at all.
struct PhaseStats {
  std::array<double, kNumPhases + 1> max{};
  std::array<double, kNumPhases + 1> mean{};
};

// Mean host time per step inside each phase (schedule/phase.hpp, ScopedHostWork), in ms: the max
// and the mean over ranks.
struct HostStats {
  PhaseTimes max{};
  PhaseTimes mean{};
};

// Communication time per step and the part of it no compute span covered, on the rank whose
// overlap efficiency (1 - exposed / communication) is lowest, and the mean efficiency over ranks.
struct OverlapStats {
  double comm_ms = 0;
  double exposed_comm_ms = 0;
  double efficiency = 1;
  int rank = 0;
  double mean_efficiency = 1;
};

// The checked pass's outputs against the single-rank reference.
struct Verification {
  bool checked = false;
  double max_rel_error = 0;              // over prefill and decode; NaN when an output is not finite
  double tolerance = 0;
  double prefill_max_rel_error = 0;
  std::vector<double> decode_max_rel_error;   // [decode steps]
  bool routing_matches_reference = false;
  bool compared_choices = false;         // every token's choice compared (else the counts only)
  bool passed = true;
  // 16-bit runs: the reference replayed the strategy's routing (teacher-forced); how that routing
  // differs from the reference's own choice, the gap tolerance, and the error the comparison with
  // the reference's own routing would have found (docs/verification.md).
  bool replayed_routing = false;
  int64_t tokens_compared = 0, tokens_differing = 0;
  double max_score_gap = 0, max_score_gap_probability = 0, score_gap_tolerance = 0;
  double max_rel_error_vs_own_routing = 0;
};

struct StrategyMeasurement {
  StrategyConfig spec;
  std::string kind;
  nlohmann::ordered_json layout;         // Strategy::layout(), with plan_file when a plan file placed it
  int world_size = 1;
  int dtype_bytes = 4;                   // the compute dtype's size
  bool cuda_runtime = false;             // the backend is cuda: the memory estimate adds its runtime
  std::vector<double> prefill_ms;        // [iterations] max over ranks
  std::vector<double> decode_ms;         // [iterations * decode steps] max over ranks
  PhaseStats prefill_phases, decode_phases;
  HostStats prefill_host, decode_host;
  OverlapStats prefill_overlap, decode_overlap;
  int64_t flops = 0;                     // the backend's counter, summed over ranks and measured iterations
  std::vector<std::vector<int64_t>> traffic_bytes;   // [src][dst] over the measured iterations
  // ep with expert_tp = 1: the placement it ran with and the expected routing that placement was made
  // for (its name: "" = uniform), for the traffic prediction. Empty otherwise.
  std::optional<Placement> placement;
  // ep: the placement over ranks it ran with (expert shards with expert_tp > 1), for the cost model.
  std::optional<Placement> rank_placement;
  LoadProfile planned;
  std::string planned_spec;
  CheckedRouting routing;                // the checked pass
  std::optional<bool> choices_match_reference;   // every choice equals the reference's (traced and verified)
  int64_t peak_allocated_bytes_max = 0, peak_allocated_bytes_mean = 0;
  Verification verification;
};

}  // namespace moe
