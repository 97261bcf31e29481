// Routing records of the checked pass (one untimed iteration), reduced over the ranks step by step:
// global per-step counts, the assignments each rank's experts processed, per-source counts (ep) and
// the recorded choices as a routing trace. report/load_report.hpp writes them as results sections.
#pragma once
#include <cstdint>
#include <vector>

#include "backend/backend.hpp"
#include "routing/routing_source.hpp"
#include "strategies/strategy.hpp"

namespace moe {

struct CheckedRouting {
  int num_layers = 0, num_experts = 0, num_ranks = 0, top_k = 0;
  std::vector<int64_t> tokens_per_step;                        // [steps]
  std::vector<std::vector<std::vector<int64_t>>> chosen;       // [step][L][E] global
  std::vector<std::vector<std::vector<int64_t>>> dropped;      // [step][L][E] global
  std::vector<std::vector<int64_t>> processed;                 // [L][G] summed over steps (ep), else empty
  std::vector<std::vector<std::vector<int64_t>>> chosen_by_source;   // [L][G][E] summed over steps (ep), else empty
  std::vector<std::vector<std::vector<int64_t>>> dropped_by_source;  // [L][G][E] likewise
  bool has_trace = false;
  RoutingTrace trace;                                          // on world rank 0 when has_trace

  // Global counts of the iteration: [L][E] (sums over steps).
  std::vector<std::vector<int64_t>> chosen_total() const;
  std::vector<std::vector<int64_t>> dropped_total() const;
};

// Assignments per iteration up to which choices are recorded and written inline as a trace.
constexpr int64_t kTraceInlineLimit = int64_t(1) << 20;

// Collective: adds one step's StepLoad (after the step ran) to `acc`.
void record_step(Comm& world, const StepLoad& load, int64_t step_tokens, bool with_choices, CheckedRouting& acc);

}  // namespace moe
