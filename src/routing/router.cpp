// Gate softmax, top-k choice, capacity drops and the `paper` load-balancing multipliers.
// Deterministic: every strategy calls these with identical inputs in identical order. The per-token
// rule itself is gate_rule.hpp's, shared with device code.
#include "routing/router.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "core/gate_rule.hpp"

namespace moe {

void softmax_rows(std::vector<float>& logits, int num_tokens, int num_experts) {
  MOE_REQUIRE(num_tokens >= 0 && num_experts > 0, "softmax_rows: bad shape");
  MOE_REQUIRE(logits.size() >= static_cast<size_t>(num_tokens) * num_experts, "softmax_rows: logits too small");
  std::vector<float> row(num_experts);
  for (int t = 0; t < num_tokens; ++t) {
    float* x = logits.data() + static_cast<size_t>(t) * num_experts;
    gate_softmax_row(x, num_experts, row.data());
    std::copy(row.begin(), row.end(), x);
  }
}

Routing route_top_k(const std::vector<float>& probs, int num_tokens, int num_experts, int top_k,
                    const std::vector<double>& multipliers, bool renormalize) {
  return route_top_k_scored(probs, probs, num_tokens, num_experts, top_k, multipliers, renormalize);
}

namespace {

Routing empty_routing(int num_tokens, int num_experts, int top_k) {
  Routing r;
  r.num_tokens = num_tokens;
  r.top_k = top_k;
  r.expert.assign(static_cast<size_t>(num_tokens) * top_k, -1);
  r.weight.assign(static_cast<size_t>(num_tokens) * top_k, 0.0f);
  r.chosen_per_expert.assign(num_experts, 0);
  r.dropped_per_expert.assign(num_experts, 0);
  return r;
}

// Weights of token t's chosen experts (already in r.expert), and their counts.
void set_weights(Routing& r, int t, const float* p, bool renormalize) {
  const size_t first = static_cast<size_t>(t) * r.top_k;
  gate_weights(p, r.expert.data() + first, r.top_k, renormalize, r.weight.data() + first);
  for (int j = 0; j < r.top_k; ++j) ++r.chosen_per_expert[r.expert[first + j]];
}

}  // namespace

Routing route_top_k_scored(const std::vector<float>& scores, const std::vector<float>& probs, int num_tokens,
                           int num_experts, int top_k, const std::vector<double>& multipliers, bool renormalize) {
  MOE_REQUIRE(num_tokens >= 0 && num_experts > 0, "route_top_k: bad shape");
  MOE_REQUIRE(top_k >= 1 && top_k <= num_experts, "route_top_k: top_k must be in [1, experts]");
  MOE_REQUIRE(probs.size() >= static_cast<size_t>(num_tokens) * num_experts, "route_top_k: probs too small");
  MOE_REQUIRE(scores.size() >= static_cast<size_t>(num_tokens) * num_experts, "route_top_k: scores too small");
  MOE_REQUIRE(multipliers.size() == static_cast<size_t>(num_experts), "route_top_k: one multiplier per expert");
  Routing r = empty_routing(num_tokens, num_experts, top_k);
  for (int t = 0; t < num_tokens; ++t) {
    const size_t row = static_cast<size_t>(t) * num_experts;
    gate_top_k(scores.data() + row, multipliers.data(), num_experts, top_k, r.expert.data() + size_t(t) * top_k);
    set_weights(r, t, probs.data() + row, renormalize);
  }
  return r;
}

Routing route_forced(const std::vector<int32_t>& experts, const std::vector<float>& probs, int num_tokens,
                     int num_experts, int top_k, bool renormalize) {
  MOE_REQUIRE(num_tokens >= 0 && num_experts > 0 && top_k >= 1 && top_k <= num_experts, "route_forced: bad shape");
  MOE_REQUIRE(experts.size() == static_cast<size_t>(num_tokens) * top_k, "route_forced: one choice per (token, k)");
  MOE_REQUIRE(probs.size() >= static_cast<size_t>(num_tokens) * num_experts, "route_forced: probs too small");
  Routing r = empty_routing(num_tokens, num_experts, top_k);
  for (int t = 0; t < num_tokens; ++t) {
    for (int j = 0; j < top_k; ++j) {
      const int32_t e = experts[static_cast<size_t>(t) * top_k + j];
      MOE_REQUIRE(e >= 0 && e < num_experts, "route_forced: expert index out of range");
      for (int i = 0; i < j; ++i)
        MOE_REQUIRE(experts[static_cast<size_t>(t) * top_k + i] != e, "route_forced: a token chose one expert twice");
      r.expert[static_cast<size_t>(t) * top_k + j] = e;
    }
    set_weights(r, t, probs.data() + static_cast<size_t>(t) * num_experts, renormalize);
  }
  return r;
}

int64_t expert_capacity(double capacity_factor, int64_t total_tokens, int top_k, int num_experts) {
  MOE_REQUIRE(capacity_factor >= 0, "capacity_factor must be >= 0");
  MOE_REQUIRE(total_tokens >= 0 && top_k >= 1 && num_experts >= 1, "expert_capacity: bad sizes");
  if (capacity_factor == 0) return -1;
  const long double exact = static_cast<long double>(capacity_factor) * total_tokens * top_k / num_experts;
  // A factor such as 1.1 is stored slightly above or below its decimal value; a product that is an
  // integer up to that representation error counts as that integer, so ceil does not add a slot.
  const long double nearest = std::round(exact);
  if (std::fabs(exact - nearest) <= 1e-9L * std::max(1.0L, nearest)) return static_cast<int64_t>(nearest);
  return static_cast<int64_t>(std::ceil(exact));
}

Routing empty_routing(int num_experts, int top_k) {
  MOE_REQUIRE(num_experts > 0 && top_k > 0, "empty_routing: experts and top_k must be positive");
  Routing r;
  r.top_k = top_k;
  r.chosen_per_expert.assign(num_experts, 0);
  r.dropped_per_expert.assign(num_experts, 0);
  return r;
}

void append_routing(Routing& r, const Routing& next) {
  MOE_REQUIRE(r.top_k == next.top_k && r.chosen_per_expert.size() == next.chosen_per_expert.size() &&
                  r.dropped_per_expert.size() == next.dropped_per_expert.size(),
              "append_routing: the routings differ in top_k or expert count");
  r.num_tokens += next.num_tokens;
  r.expert.insert(r.expert.end(), next.expert.begin(), next.expert.end());
  r.weight.insert(r.weight.end(), next.weight.begin(), next.weight.end());
  for (size_t e = 0; e < r.chosen_per_expert.size(); ++e) {
    r.chosen_per_expert[e] += next.chosen_per_expert[e];
    r.dropped_per_expert[e] += next.dropped_per_expert[e];
  }
}

void apply_capacity(Routing& r, int num_experts, int64_t capacity, const std::vector<int64_t>& earlier_assignments) {
  MOE_REQUIRE(num_experts > 0, "apply_capacity: bad expert count");
  MOE_REQUIRE(earlier_assignments.empty() || earlier_assignments.size() == static_cast<size_t>(num_experts),
              "apply_capacity: earlier_assignments must be empty or have one entry per expert");
  r.dropped_per_expert.assign(num_experts, 0);
  if (capacity < 0) return;
  // Once an expert is full every later assignment to it is dropped, so earlier_assignments may hold
  // either kept or chosen counts of the earlier tokens: both give the same decisions.
  std::vector<int64_t> kept_so_far(num_experts, 0);
  const size_t n = static_cast<size_t>(r.num_tokens) * r.top_k;
  for (size_t a = 0; a < n; ++a) {  // token order, then choice order
    const int e = r.expert[a];
    if (e < 0) continue;
    MOE_REQUIRE(e < num_experts, "apply_capacity: expert index out of range");
    const int64_t before = earlier_assignments.empty() ? 0 : earlier_assignments[e];
    if (before + kept_so_far[e] < capacity) {
      ++kept_so_far[e];
    } else {
      r.expert[a] = -1;
      r.weight[a] = 0.0f;  // the other choices of the token keep their weights (no re-normalization)
      ++r.dropped_per_expert[e];
    }
  }
}

LoadBalancer::LoadBalancer(const LoadBalancingConfig& cfg, int num_experts)
    : cfg_(cfg), multipliers_(num_experts, 1.0), window_counts_(num_experts, 0) {
  MOE_REQUIRE(num_experts > 0, "LoadBalancer: experts must be positive");
  MOE_REQUIRE(cfg.policy == "none" || cfg.policy == "paper", "LoadBalancer: policy must be none or paper");
  MOE_REQUIRE(cfg.threshold > 0, "LoadBalancer: threshold must be positive");
  MOE_REQUIRE(cfg.update_interval_tokens >= 0, "LoadBalancer: update_interval_tokens must be >= 0");
}

void LoadBalancer::observe(int64_t tokens, const std::vector<int64_t>& chosen_per_expert) {
  MOE_REQUIRE(tokens >= 0, "LoadBalancer::observe: negative token count");
  MOE_REQUIRE(chosen_per_expert.size() == window_counts_.size(), "LoadBalancer::observe: one count per expert");
  window_tokens_ += tokens;
  for (size_t e = 0; e < window_counts_.size(); ++e) window_counts_[e] += chosen_per_expert[e];
}

bool LoadBalancer::end_step() {
  if (cfg_.policy != "paper") {
    std::fill(window_counts_.begin(), window_counts_.end(), 0);
    window_tokens_ = 0;
    return false;
  }
  // Below the interval the window keeps accumulating across steps.
  if (!window_complete(window_tokens_, cfg_)) return false;
  const size_t num_experts = window_counts_.size();
  double mean = 0;
  for (int64_t c : window_counts_) mean += static_cast<double>(c);
  mean /= static_cast<double>(num_experts);
  for (size_t e = 0; e < num_experts; ++e) {
    const double c = static_cast<double>(window_counts_[e]);
    if (c > cfg_.threshold * mean) {
      multipliers_[e] = std::max(0.1, multipliers_[e] * (1.0 - cfg_.step));
    } else if (c < mean / cfg_.threshold) {
      multipliers_[e] = std::min(10.0, multipliers_[e] * (1.0 + cfg_.step));
    }
  }
  std::fill(window_counts_.begin(), window_counts_.end(), 0);
  window_tokens_ = 0;
  ++num_updates_;
  return true;
}

void LoadBalancer::reset() {
  std::fill(multipliers_.begin(), multipliers_.end(), 1.0);
  std::fill(window_counts_.begin(), window_counts_.end(), 0);
  window_tokens_ = 0;
  num_updates_ = 0;
}

}  // namespace moe
