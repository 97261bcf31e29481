// The load and routing sections (see load_report.hpp).
#include "report/load_report.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "runner/stats.hpp"

namespace moe {
namespace {

using ojson = nlohmann::ordered_json;

int64_t total(const std::vector<int64_t>& v) {
  int64_t s = 0;
  for (int64_t x : v) s += x;
  return s;
}

double balancedness(const std::vector<int64_t>& v) { return summarize_load(v).balancedness; }

}  // namespace

ojson load_json(const CheckedRouting& r, const LoadBalancingConfig& lb) {
  const auto chosen = r.chosen_total(), dropped = r.dropped_total();
  ojson layers = ojson::array();
  double worst = 1, worst_gpu = 1;
  int64_t total_dropped = 0;
  for (int l = 0; l < r.num_layers; ++l) {
    const LoadSummary s = summarize_load(chosen[l]);
    const int64_t d = total(dropped[l]);
    total_dropped += d;
    worst = std::min(worst, s.balancedness);
    ojson layer = {{"layer", l}, {"tokens_per_expert", chosen[l]}, {"dropped", d}, {"balancedness", s.balancedness},
                   {"cv", s.cv}};
    if (!r.processed.empty()) {
      const double gpu_b = balancedness(r.processed[l]);
      worst_gpu = std::min(worst_gpu, gpu_b);
      layer["tokens_per_gpu"] = r.processed[l];
      layer["gpu_balancedness"] = gpu_b;
    }
    if (!r.chosen_by_source.empty()) {
      layer["tokens_per_source_expert"] = r.chosen_by_source[l];
      layer["dropped_per_source_expert"] = r.dropped_by_source[l];
    }
    layers.push_back(layer);
  }

  // Balancing windows, replaying the policy on the counted windows (every layer sees the same tokens,
  // so the windows close at the same steps for all layers).
  std::vector<LoadBalancer> balancers(r.num_layers, LoadBalancer(lb, std::max(1, r.num_experts)));
  ojson windows = ojson::array();
  std::vector<std::vector<int64_t>> win(r.num_layers, std::vector<int64_t>(r.num_experts, 0));
  int64_t win_tokens = 0, win_dropped = 0;
  size_t first = 0;
  auto close = [&](size_t last, bool complete) {
    ojson per_layer = ojson::array(), multipliers = ojson::array();
    double mean = 0;
    for (int l = 0; l < r.num_layers; ++l) {
      const double b = balancedness(win[l]);
      per_layer.push_back(b);
      mean += b / r.num_layers;
      multipliers.push_back(balancers[l].multipliers());
    }
    windows.push_back({{"steps", {first, last}}, {"tokens", win_tokens}, {"complete", complete},
                       {"balancedness_mean", mean}, {"balancedness_per_layer", per_layer}, {"dropped", win_dropped},
                       {"multipliers_after", multipliers}});
    for (auto& w : win) std::fill(w.begin(), w.end(), 0);
    win_tokens = 0, win_dropped = 0, first = last + 1;
  };
  ojson per_step = ojson::array();
  for (size_t s = 0; s < r.chosen.size(); ++s) {
    int64_t step_dropped = 0;
    double step_worst = 1;
    for (int l = 0; l < r.num_layers; ++l) {
      balancers[l].observe(r.tokens_per_step[s], r.chosen[s][l]);
      for (int e = 0; e < r.num_experts; ++e) win[l][e] += r.chosen[s][l][e];
      step_dropped += total(r.dropped[s][l]);
      step_worst = std::min(step_worst, balancedness(r.chosen[s][l]));
    }
    win_tokens += r.tokens_per_step[s];
    win_dropped += step_dropped;
    per_step.push_back({{"step", s}, {"tokens", r.tokens_per_step[s]}, {"dropped", step_dropped},
                        {"min_balancedness", step_worst}});
    const bool complete = LoadBalancer::window_complete(win_tokens, lb);
    for (auto& b : balancers) b.end_step();
    if (complete) close(s, true);
  }
  if (win_tokens > 0) close(r.chosen.size() - 1, false);

  return {{"scope", "one iteration (prefill = step 0, then every decode step); assignments chosen by top-k"},
          {"min_balancedness", worst},
          {"min_gpu_balancedness", r.processed.empty() ? nlohmann::ordered_json(nullptr) : ojson(worst_gpu)},
          {"dropped_total", total_dropped},
          {"layers", layers},
          {"windows_note", "update windows of >= load_balancing.update_interval_tokens tokens; balancedness = mean/max "
                           "assignments per expert in the window; multipliers after the window's update (policy paper)"},
          {"windows", windows},
          {"per_step", per_step}};
}

ojson routing_json(const RoutingSource& source, const CheckedRouting& r, std::optional<bool> choices_match_reference) {
  ojson j = {{"workload", source.spec()},
             {"source", source.kind() == RoutingSource::Kind::gate        ? "gate"
                        : source.kind() == RoutingSource::Kind::synthetic ? "synthetic (overrides the gate's choice)"
                                                                          : "trace replay"},
             {"balancing_steers_choice", source.steerable()}};
  int64_t assignments = 0;
  for (int64_t t : r.tokens_per_step) assignments += t * std::max(r.top_k, 1);
  const bool inline_trace = r.has_trace && assignments <= kTraceInlineLimit;
  if (!inline_trace) {
    j["trace"] = nullptr;
    j["trace_note"] = "not recorded: " + std::to_string(assignments) + " tokens x top_k per iteration exceed the inline limit of " +
                      std::to_string(kTraceInlineLimit) + " assignments";
    return j;
  }
  j["trace_digest"] = r.trace.digest();
  if (choices_match_reference) j["choices_match_reference"] = *choices_match_reference;
  j["trace"] = r.trace.to_json();
  return j;
}

}  // namespace moe
