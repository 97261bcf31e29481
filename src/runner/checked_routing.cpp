// Checked-pass routing records (see checked_routing.hpp).
#include "runner/checked_routing.hpp"

#include "core/error.hpp"

namespace moe {
namespace {

std::vector<std::vector<int64_t>> sum_steps(const std::vector<std::vector<std::vector<int64_t>>>& per_step) {
  std::vector<std::vector<int64_t>> out;
  for (const auto& step : per_step) {
    if (out.empty()) out.assign(step.size(), std::vector<int64_t>(step.empty() ? 0 : step[0].size(), 0));
    for (size_t l = 0; l < step.size(); ++l)
      for (size_t e = 0; e < step[l].size(); ++e) out[l][e] += step[l][e];
  }
  return out;
}

// Where one step's records lie in the vector reduced over the ranks:
// [chosen L*E | dropped L*E | processed L*G | chosen, dropped by source 2*L*G*E | choices].
struct FlatLayout {
  int L = 0, E = 0, G = 0;
  size_t processed = 0;   // offset of the per-GPU counts
  size_t by_source = 0;   // offset of the per-source counts
  size_t choices = 0;     // offset of the choices
  size_t size = 0;
  bool per_gpu = false, per_source = false;

  size_t chosen_at(int l, int e) const { return size_t(l) * E + e; }
  size_t dropped_at(int l, int e) const { return size_t(L + l) * E + e; }
  size_t processed_at(int l, int g) const { return processed + size_t(l) * G + g; }
  size_t chosen_by_source_at(int l, int g, int e) const { return by_source + (size_t(l) * G + g) * E + e; }
  size_t dropped_by_source_at(int l, int g, int e) const { return by_source + (size_t(L + l) * G + g) * E + e; }
};

FlatLayout flat_layout(const StepLoad& load, int num_ranks, bool with_choices) {
  FlatLayout f;
  f.L = static_cast<int>(load.chosen.size());
  f.E = f.L ? static_cast<int>(load.chosen[0].size()) : 0;
  f.G = num_ranks;
  f.per_gpu = !load.processed.empty();
  f.per_source = !load.chosen_here.empty();
  f.processed = size_t(2) * f.L * f.E;
  f.by_source = f.processed + (f.per_gpu ? size_t(f.L) * f.G : 0);
  f.choices = f.by_source + (f.per_source ? size_t(2) * f.L * f.G * f.E : 0);
  f.size = f.choices;
  if (with_choices) {
    MOE_REQUIRE(static_cast<int>(load.choices.size()) == f.L, "record_step: choices were not recorded");
    for (const auto& c : load.choices) f.size += c.size();
  }
  return f;
}

// Sizes the accumulator at the first step; later steps must have the same shape.
void shape_accumulator(const FlatLayout& f, CheckedRouting& acc) {
  if (acc.num_layers == 0) {
    acc.num_layers = f.L, acc.num_experts = f.E, acc.num_ranks = f.G;
    if (f.per_gpu) acc.processed.assign(f.L, std::vector<int64_t>(f.G, 0));
    if (f.per_source) {
      acc.chosen_by_source.assign(f.L, std::vector<std::vector<int64_t>>(f.G, std::vector<int64_t>(f.E, 0)));
      acc.dropped_by_source = acc.chosen_by_source;
    }
  }
  MOE_REQUIRE(acc.num_layers == f.L && acc.num_experts == f.E, "record_step: shape changed between steps");
}

// This rank's contribution: the global counts (identical on every rank, so rank 0's would do, but
// one reduction carries everything), its own per-GPU and per-source rows, and its tokens' choices.
std::vector<int64_t> pack_step(const FlatLayout& f, const StepLoad& load, int me, bool with_choices) {
  std::vector<int64_t> flat(f.size, 0);
  for (int l = 0; l < f.L; ++l)
    for (int e = 0; e < f.E; ++e) {
      flat[f.chosen_at(l, e)] = load.chosen[l][e];
      flat[f.dropped_at(l, e)] = load.dropped[l][e];
    }
  if (f.per_gpu)
    for (int l = 0; l < f.L; ++l) flat[f.processed_at(l, me)] = load.processed.at(l);
  if (f.per_source)
    for (int l = 0; l < f.L; ++l)
      for (int e = 0; e < f.E; ++e) {
        flat[f.chosen_by_source_at(l, me, e)] = load.chosen_here[l][e];
        flat[f.dropped_by_source_at(l, me, e)] = load.dropped_here[l][e];
      }
  size_t at = f.choices;
  if (with_choices)
    for (const auto& c : load.choices)
      for (int32_t v : c) flat[at++] = v;
  return flat;
}

// Adds the reduced counts of one step to `acc`.
void add_counts(const FlatLayout& f, const std::vector<int64_t>& flat, int64_t step_tokens, CheckedRouting& acc) {
  std::vector<std::vector<int64_t>> chosen(f.L, std::vector<int64_t>(f.E)), dropped = chosen;
  for (int l = 0; l < f.L; ++l)
    for (int e = 0; e < f.E; ++e) {
      chosen[l][e] = flat[f.chosen_at(l, e)];
      dropped[l][e] = flat[f.dropped_at(l, e)];
    }
  acc.chosen.push_back(std::move(chosen));
  acc.dropped.push_back(std::move(dropped));
  acc.tokens_per_step.push_back(step_tokens);
  if (f.per_gpu)
    for (int l = 0; l < f.L; ++l)
      for (int g = 0; g < f.G; ++g) acc.processed[l][g] += flat[f.processed_at(l, g)];
  if (f.per_source)
    for (int l = 0; l < f.L; ++l)
      for (int g = 0; g < f.G; ++g)
        for (int e = 0; e < f.E; ++e) {
          acc.chosen_by_source[l][g][e] += flat[f.chosen_by_source_at(l, g, e)];
          acc.dropped_by_source[l][g][e] += flat[f.dropped_by_source_at(l, g, e)];
        }
}

// Appends the step's reduced choices (expert + 1 from exactly one rank per token) to the trace.
void add_choices(const FlatLayout& f, const std::vector<int64_t>& flat, const StepLoad& load, int64_t step_tokens,
                 CheckedRouting& acc) {
  acc.has_trace = true;
  RoutingTrace& t = acc.trace;
  t.num_layers = f.L, t.num_experts = f.E;
  t.top_k = step_tokens > 0 ? static_cast<int>(load.choices[0].size() / step_tokens) : 0;
  acc.top_k = t.top_k;
  t.tokens_per_step.push_back(step_tokens);
  std::vector<std::vector<int32_t>> layers;
  size_t at = f.choices;
  for (const auto& c : load.choices) {
    std::vector<int32_t> v(c.size());
    for (size_t i = 0; i < c.size(); ++i) {
      const int64_t x = flat[at++];
      // Exactly one rank reports each token: 0 (none) or > E (several) is a strategy bug.
      MOE_REQUIRE(x >= 1 && x <= f.E, "record_step: a token's choice was not reported by exactly one rank");
      v[i] = static_cast<int32_t>(x - 1);
    }
    layers.push_back(std::move(v));
  }
  t.choices.push_back(std::move(layers));
}

}  // namespace

std::vector<std::vector<int64_t>> CheckedRouting::chosen_total() const { return sum_steps(chosen); }
std::vector<std::vector<int64_t>> CheckedRouting::dropped_total() const { return sum_steps(dropped); }

void record_step(Comm& world, const StepLoad& load, int64_t step_tokens, bool with_choices, CheckedRouting& acc) {
  const FlatLayout f = flat_layout(load, world.size(), with_choices);
  shape_accumulator(f, acc);
  std::vector<int64_t> flat = pack_step(f, load, world.rank(), with_choices);
  world.all_reduce_sum_host(flat);
  add_counts(f, flat, step_tokens, acc);
  if (with_choices) add_choices(f, flat, load, step_tokens, acc);
}

}  // namespace moe
