// Gate -> top-k routing, capacity drops and the load-balancing multipliers (docs/model.md "MoE
// layer", "Load balancing" and "Capacity"). Pure host code shared by the reference and every
// strategy, so the routing rules are written once and tested on the CPU.
#pragma once
#include <cstdint>
#include <vector>

#include "core/config.hpp"

namespace moe {

// Routing decision for a block of tokens.
struct Routing {
  int num_tokens = 0;
  int top_k = 0;
  std::vector<int32_t> expert;   // [num_tokens * top_k] chosen expert, or -1 if dropped by capacity
  std::vector<float> weight;     // [num_tokens * top_k] combine weight (0 when dropped)
  std::vector<int64_t> chosen_per_expert;   // [E] assignments chosen by top-k (before capacity)
  std::vector<int64_t> dropped_per_expert;  // [E] assignments dropped by capacity
};

// In-place row softmax of gate logits [num_tokens x num_experts] (float64 internally).
void softmax_rows(std::vector<float>& logits, int num_tokens, int num_experts);

// Top-k by p_e * m_e (ties -> lower expert index); weights = chosen p_e, divided by their sum when
// renormalize. No capacity applied (expert never -1). probs: [num_tokens x E], multipliers: [E].
Routing route_top_k(const std::vector<float>& probs, int num_tokens, int num_experts, int top_k,
                    const std::vector<double>& multipliers, bool renormalize);

// As route_top_k, choosing by scores[t][e] * m_e while the weights come from probs (synthetic routing:
// the workload picks the experts, the gate's probabilities weight them). Both [num_tokens x E].
Routing route_top_k_scored(const std::vector<float>& scores, const std::vector<float>& probs, int num_tokens,
                           int num_experts, int top_k, const std::vector<double>& multipliers, bool renormalize);

// Routing with the experts given ([num_tokens * top_k], distinct per token, e.g. a replayed trace);
// weights from probs as in route_top_k. Throws on out-of-range or repeated experts.
Routing route_forced(const std::vector<int32_t>& experts, const std::vector<float>& probs, int num_tokens,
                     int num_experts, int top_k, bool renormalize);

// Routing of no tokens (every per-expert count zero).
Routing empty_routing(int num_experts, int top_k);
// Appends `next` (the tokens that follow `r`'s, same experts and top_k) to `r`: the routing of a
// block routed part by part, as if routed at once.
void append_routing(Routing& r, const Routing& next);

// Capacity per expert for one layer-step: ceil(factor * total_tokens * k / E); -1 (unlimited) when factor == 0.
int64_t expert_capacity(double capacity_factor, int64_t total_tokens, int top_k, int num_experts);

// Drop assignments beyond `capacity` in token order (tokens of this block come after
// `earlier_assignments[e]` assignments to expert e from earlier tokens of the same layer-step in
// global order). Sets expert=-1, weight=0 for dropped; fills dropped_per_expert. No-op if capacity < 0.
void apply_capacity(Routing& r, int num_experts, int64_t capacity, const std::vector<int64_t>& earlier_assignments);

// Per-layer multipliers m_e with the `paper` policy. One instance per layer; every strategy keeps
// identical state because it feeds identical global counts at identical step boundaries.
class LoadBalancer {
 public:
  LoadBalancer(const LoadBalancingConfig& cfg, int num_experts);
  const std::vector<double>& multipliers() const { return multipliers_; }
  // Record one layer-step's global counts: tokens routed and chosen assignments per expert.
  void observe(int64_t tokens, const std::vector<int64_t>& chosen_per_expert);
  // Step boundary: update multipliers if at least update_interval_tokens were observed since the
  // last update (policy paper), then start a new window. Returns true if an update happened.
  bool end_step();
  void reset();  // back to m_e = 1 and an empty window (start of an iteration)
  // The window rule: a window closes at the first step boundary with at least
  // update_interval_tokens tokens routed through the layer since it opened.
  static bool window_complete(int64_t window_tokens, const LoadBalancingConfig& cfg) {
    return window_tokens >= cfg.update_interval_tokens;
  }
  int num_updates() const { return num_updates_; }

 private:
  LoadBalancingConfig cfg_;
  std::vector<double> multipliers_;
  std::vector<int64_t> window_counts_;
  int64_t window_tokens_ = 0;
  int num_updates_ = 0;
};

}  // namespace moe
