// Assumed routing of a simulation (see assumed_routing.hpp).
#include "sim/assumed_routing.hpp"

#include <algorithm>
#include <map>
#include <memory>

#include "core/error.hpp"
#include "placement/load_profile.hpp"
#include "routing/router.hpp"
#include "topology/topology.hpp"

namespace moe {
namespace {

int64_t rows_of_step(const Config& c, int ranks, int step) {
  return int64_t(c.workload.batch_sequences) / ranks * (step == 0 ? c.workload.prompt_tokens : 1);
}

// Shares sum to 1 per layer (ExpectedRouting::expert_share); an empty layer becomes uniform.
void normalize_shares(std::vector<std::vector<double>>& shares) {
  for (auto& layer : shares) {
    double sum = 0;
    for (double x : layer) sum += x;
    for (double& x : layer) x = sum > 0 ? x / sum : 1.0 / double(layer.size());
  }
}

SourceAssignments zeros(int L, int G, int E) {
  return SourceAssignments(L, std::vector<std::vector<double>>(G, std::vector<double>(E, 0.0)));
}

// Steps that share one entry collapse into source_assignments.
void set_steps(ExpectedRouting& r, std::vector<std::shared_ptr<const SourceAssignments>> steps) {
  const bool one = std::all_of(steps.begin(), steps.end(), [&](const auto& p) { return p == steps.front(); });
  if (one && !steps.empty()) {
    r.source_assignments = steps.front();
  } else {
    r.step_source_assignments = std::move(steps);
  }
}

AssumedRouting from_distribution(const Config& c, const StrategyConfig& s) {
  const RoutingDistribution d = parse_routing_distribution(c.workload.routing, "workload.routing");
  const Topology topo = Topology::from_config(c.cluster);
  const int L = c.model.layers, E = c.model.experts, k = c.model.top_k, G = topo.num_ranks(), N = topo.nodes();
  const int steps = 1 + c.workload.decode_steps;
  const double factor = s.load_balancing.capacity_factor;
  AssumedRouting a;
  a.name = "synthetic " + d.text;
  a.description = "synthetic '" + d.text + "': expected assignments per source rank and step (the distribution's shares, "
                  "local:p by the source's node, capped at 1/top_k per expert" +
                  std::string(d.drift_steps > 0 ? ", at each step's drift epoch" : "") +
                  (factor > 0 ? "; capacity drops in global token order, lower ranks first" : "") + ")";
  const LoadProfile base = profile_from_distribution(d, L, E, k, topo, 1.0, c.model.seed);  // per local token
  // Drift moves the popularity by max(1, E/8) experts per epoch; rotating the epoch-0 profile is that
  // move exactly unless local:p's home experts (e mod nodes) are not preserved by the rotation.
  std::map<int, std::shared_ptr<const SourceAssignments>> epochs;
  bool rotation_inexact = false;
  auto epoch_profile = [&](int epoch) {
    auto it = epochs.find(epoch);
    if (it != epochs.end()) return it->second;
    const int shift = int((int64_t(epoch) * std::max(1, E / 8)) % E);
    if (shift != 0 && d.locality > 0 && !(E >= N && E % N == 0 && shift % N == 0)) rotation_inexact = true;
    auto p = std::make_shared<SourceAssignments>(zeros(L, G, E));
    for (int l = 0; l < L; ++l)
      for (int g = 0; g < G; ++g)
        for (int e = 0; e < E; ++e) (*p)[l][g][(e + shift) % E] = base.tokens[l][g][e];
    return epochs[epoch] = p;
  };
  std::map<std::pair<int, int64_t>, std::shared_ptr<const SourceAssignments>> kept_cache;
  std::vector<std::shared_ptr<const SourceAssignments>> per_step;
  a.routing.expert_share.assign(L, std::vector<double>(E, 0.0));
  a.dropped_known = true;
  for (int st = 0; st < steps; ++st) {
    const int epoch = drift_epoch(d, st);
    const int64_t rows = rows_of_step(c, G, st);
    const auto chosen = epoch_profile(epoch);
    for (int l = 0; l < L; ++l)
      for (int g = 0; g < G; ++g)
        for (int e = 0; e < E; ++e) a.routing.expert_share[l][e] += (*chosen)[l][g][e] * double(rows);
    if (factor <= 0) {
      per_step.push_back(chosen);
      continue;
    }
    const int64_t cap = expert_capacity(factor, rows * G, k, E);
    const auto key = std::make_pair(epoch, rows);
    double step_dropped = 0;
    auto kept = std::make_shared<SourceAssignments>(*chosen);
    for (int l = 0; l < L; ++l)
      for (int e = 0; e < E; ++e) {
        double left = double(cap);
        for (int g = 0; g < G; ++g) {
          const double want = (*chosen)[l][g][e] * double(rows);
          const double keep = std::min(want, std::max(0.0, left));
          left -= keep;
          step_dropped += want - keep;
          (*kept)[l][g][e] = rows > 0 ? keep / double(rows) : 0.0;
        }
      }
    a.dropped += step_dropped;
    auto it = kept_cache.find(key);
    per_step.push_back(it != kept_cache.end() ? it->second : (kept_cache[key] = kept));
  }
  set_steps(a.routing, std::move(per_step));
  normalize_shares(a.routing.expert_share);
  a.notes.push_back("a run samples each token's top_k experts from these shares (Gumbel top-k), so its counts scatter "
                    "around the expected ones");
  if (s.load_balancing.policy == "paper")
    a.notes.push_back("load_balancing.policy paper steers the run's synthetic choice toward balance; the prediction uses "
                      "the unsteered shares");
  if (rotation_inexact)
    a.notes.push_back("drift with local:p: later epochs rotate the epoch-0 shares, which moves local:p's home experts "
                      "as well (approximate)");
  return a;
}

AssumedRouting from_trace(const Config& c, const StrategyConfig& s, const RoutingTrace& t) {
  const Topology topo = Topology::from_config(c.cluster);
  const int L = c.model.layers, E = c.model.experts, k = c.model.top_k, G = topo.num_ranks();
  const int steps = 1 + c.workload.decode_steps;
  MOE_REQUIRE(t.num_layers == L && t.num_experts == E && t.top_k == k,
              "trace routing: the trace's layers, experts and top_k must equal the config's");
  MOE_REQUIRE(static_cast<int>(t.choices.size()) >= steps, "trace routing: the trace has fewer steps than the config");
  const int local_seqs = c.workload.batch_sequences / G;
  MOE_REQUIRE(local_seqs > 0 && local_seqs * G == c.workload.batch_sequences,
              "trace routing: batch_sequences must divide by the ranks");
  const double factor = s.load_balancing.capacity_factor;
  AssumedRouting a;
  a.name = "trace " + t.source;
  a.description = "trace '" + t.source + "': every step's recorded choices counted per source rank" +
                  std::string(factor > 0 ? ", capacity applied in global token order" : "") + ": the run's exact counts";
  a.routing.expert_share.assign(L, std::vector<double>(E, 0.0));
  a.dropped_known = true;
  std::vector<std::shared_ptr<const SourceAssignments>> per_step;
  for (int st = 0; st < steps; ++st) {
    const int new_len = st == 0 ? c.workload.prompt_tokens : 1;
    const int64_t tokens = int64_t(c.workload.batch_sequences) * new_len;
    const int64_t cap = factor > 0 ? expert_capacity(factor, tokens, k, E) : -1;
    const double rows = double(rows_of_step(c, G, st));
    auto p = std::make_shared<SourceAssignments>(zeros(L, G, E));
    for (int l = 0; l < L; ++l) {
      const std::vector<int32_t>& ch = t.choices[st].at(l);
      MOE_REQUIRE(static_cast<int64_t>(ch.size()) == tokens * k, "trace routing: step " + std::to_string(st) +
                                                                     " does not hold batch x new tokens x top_k choices");
      std::vector<int64_t> taken(E, 0);
      for (int64_t i = 0; i < tokens * k; ++i) {  // global token order: sequence-major, then position, then j
        const int32_t e = ch[i];
        if (e < 0) continue;
        MOE_REQUIRE(e < E, "trace routing: expert index out of range");
        a.routing.expert_share[l][e] += 1;
        if (cap >= 0 && ++taken[e] > cap) {
          a.dropped += 1;
          continue;
        }
        (*p)[l][static_cast<int>(i / k / new_len / local_seqs)][e] += 1.0 / rows;
      }
    }
    per_step.push_back(p);
  }
  a.routing.step_source_assignments = std::move(per_step);
  normalize_shares(a.routing.expert_share);
  return a;
}

}  // namespace

AssumedRouting assumed_routing(const Config& c, const StrategyConfig& s, const RoutingTrace* trace) {
  std::string path, strategy;
  if (parse_trace_spec(c.workload.routing, path, strategy)) {
    if (trace) return from_trace(c, s, *trace);
    AssumedRouting a;
    a.name = "uniform";
    a.description = "uniform: the trace of workload.routing was not loaded";
    a.notes.push_back("workload.routing is a trace that was not loaded; uniform routing assumed");
    return a;
  }
  if (is_routing_distribution(c.workload.routing)) return from_distribution(c, s);
  AssumedRouting a;
  a.name = "uniform";
  a.description = "uniform: every source sends tokens x top_k / experts assignments to each expert (workload.routing '" +
                  c.workload.routing + "': the gate's choice is not known before a run)";
  return a;
}

}  // namespace moe
