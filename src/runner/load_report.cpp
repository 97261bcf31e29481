// Checked-pass routing records and their JSON (see load_report.hpp).
#include "runner/load_report.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "runner/stats.hpp"

namespace moe {
namespace {

using ojson = nlohmann::ordered_json;

std::vector<std::vector<int64_t>> sum_steps(const std::vector<std::vector<std::vector<int64_t>>>& per_step) {
  std::vector<std::vector<int64_t>> out;
  for (const auto& step : per_step) {
    if (out.empty()) out.assign(step.size(), std::vector<int64_t>(step.empty() ? 0 : step[0].size(), 0));
    for (size_t l = 0; l < step.size(); ++l)
      for (size_t e = 0; e < step[l].size(); ++e) out[l][e] += step[l][e];
  }
  return out;
}

int64_t total(const std::vector<int64_t>& v) {
  int64_t s = 0;
  for (int64_t x : v) s += x;
  return s;
}

double balancedness(const std::vector<int64_t>& v) { return summarize_load(v).balancedness; }

}  // namespace

std::vector<std::vector<int64_t>> CheckedRouting::chosen_total() const { return sum_steps(chosen); }
std::vector<std::vector<int64_t>> CheckedRouting::dropped_total() const { return sum_steps(dropped); }

void record_step(Comm& world, const StepLoad& load, int64_t step_tokens, bool with_choices, CheckedRouting& acc) {
  const int L = static_cast<int>(load.chosen.size());
  const int E = L ? static_cast<int>(load.chosen[0].size()) : 0;
  const int G = world.size(), me = world.rank();
  const bool per_source = !load.chosen_here.empty();
  const bool per_gpu = !load.processed.empty();
  if (acc.num_layers == 0) {
    acc.num_layers = L, acc.num_experts = E, acc.num_ranks = G;
    if (per_gpu) acc.processed.assign(L, std::vector<int64_t>(G, 0));
    if (per_source) {
      acc.chosen_by_source.assign(L, std::vector<std::vector<int64_t>>(G, std::vector<int64_t>(E, 0)));
      acc.dropped_by_source = acc.chosen_by_source;
    }
  }
  MOE_REQUIRE(acc.num_layers == L && acc.num_experts == E, "record_step: shape changed between steps");
  // One reduction: [chosen L*E | dropped L*E | processed L*G | by source 2*L*G*E | choices].
  const size_t n_counts = size_t(2) * L * E, n_proc = per_gpu ? size_t(L) * G : 0, n_src = per_source ? size_t(2) * L * G * E : 0;
  size_t n_choices = 0;
  if (with_choices) {
    MOE_REQUIRE(static_cast<int>(load.choices.size()) == L, "record_step: choices were not recorded");
    for (const auto& c : load.choices) n_choices += c.size();
  }
  std::vector<int64_t> flat(n_counts + n_proc + n_src + n_choices, 0);
  for (int l = 0; l < L; ++l)
    for (int e = 0; e < E; ++e) {
      flat[size_t(l) * E + e] = load.chosen[l][e];
      flat[size_t(L + l) * E + e] = load.dropped[l][e];
    }
  if (per_gpu)
    for (int l = 0; l < L; ++l) flat[n_counts + size_t(l) * G + me] = load.processed.at(l);
  if (per_source)
    for (int l = 0; l < L; ++l)
      for (int e = 0; e < E; ++e) {
        flat[n_counts + n_proc + (size_t(l) * G + me) * E + e] = load.chosen_here[l][e];
        flat[n_counts + n_proc + (size_t(L + l) * G + me) * E + e] = load.dropped_here[l][e];
      }
  size_t at = n_counts + n_proc + n_src;
  if (with_choices)
    for (const auto& c : load.choices)
      for (int32_t v : c) flat[at++] = v;
  world.all_reduce_sum_host(flat);

  std::vector<std::vector<int64_t>> chosen(L, std::vector<int64_t>(E)), dropped = chosen;
  for (int l = 0; l < L; ++l)
    for (int e = 0; e < E; ++e) {
      chosen[l][e] = flat[size_t(l) * E + e];
      dropped[l][e] = flat[size_t(L + l) * E + e];
    }
  acc.chosen.push_back(std::move(chosen));
  acc.dropped.push_back(std::move(dropped));
  acc.tokens_per_step.push_back(step_tokens);
  if (per_gpu)
    for (int l = 0; l < L; ++l)
      for (int g = 0; g < G; ++g) acc.processed[l][g] += flat[n_counts + size_t(l) * G + g];
  if (per_source)
    for (int l = 0; l < L; ++l)
      for (int g = 0; g < G; ++g)
        for (int e = 0; e < E; ++e) {
          acc.chosen_by_source[l][g][e] += flat[n_counts + n_proc + (size_t(l) * G + g) * E + e];
          acc.dropped_by_source[l][g][e] += flat[n_counts + n_proc + (size_t(L + l) * G + g) * E + e];
        }
  if (!with_choices) return;
  acc.has_trace = true;
  RoutingTrace& t = acc.trace;
  t.num_layers = L, t.num_experts = E;
  t.top_k = step_tokens > 0 ? static_cast<int>(load.choices[0].size() / step_tokens) : 0;
  acc.top_k = t.top_k;
  t.tokens_per_step.push_back(step_tokens);
  std::vector<std::vector<int32_t>> layers;
  at = n_counts + n_proc + n_src;
  for (const auto& c : load.choices) {
    std::vector<int32_t> v(c.size());
    for (size_t i = 0; i < c.size(); ++i) {
      const int64_t x = flat[at++];
      // Exactly one rank reports each token: 0 (none) or > E (several) is a strategy bug.
      MOE_REQUIRE(x >= 1 && x <= E, "record_step: a token's choice was not reported by exactly one rank");
      v[i] = static_cast<int32_t>(x - 1);
    }
    layers.push_back(std::move(v));
  }
  t.choices.push_back(std::move(layers));
}

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

ojson routing_json(const RoutingSource& source, const CheckedRouting& r,
                   const std::vector<std::vector<std::vector<int32_t>>>* reference_choices) {
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
  if (reference_choices) j["choices_match_reference"] = *reference_choices == r.trace.choices;
  j["trace"] = r.trace.to_json();
  return j;
}

}  // namespace moe
