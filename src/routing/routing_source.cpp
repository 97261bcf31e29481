// Routing sources (gate, synthetic distribution, replayed trace) and routing traces as JSON.
#include "routing/routing_source.hpp"

#include <cmath>
#include <cstdio>

#include "core/error.hpp"
#include "core/hash.hpp"

namespace moe {
namespace {

using json = nlohmann::json;

// Stream of the synthetic routing noise (weight kinds use 1..8, popularity 0x51 in bits 16..31).
constexpr uint64_t kSyntheticRoutingKind = 0x52;
constexpr const char* kTraceFormat = "moe-bench routing trace 1";

int64_t read_int(const json& j, const std::string& key, const std::string& path, const std::string& source) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number_integer())
    throw ConfigError(path + "." + key, "must be an integer (in '" + source + "')");
  return j[key].get<int64_t>();
}

}  // namespace

bool parse_trace_spec(const std::string& spec, std::string& path, std::string& strategy) {
  if (spec.rfind("trace:", 0) != 0) return false;
  const std::string rest = spec.substr(6);
  const size_t hash = rest.rfind('#');
  path = hash == std::string::npos ? rest : rest.substr(0, hash);
  strategy = hash == std::string::npos ? "" : rest.substr(hash + 1);
  return true;
}

std::string RoutingTrace::digest() const {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](int64_t v) {
    for (int b = 0; b < 8; ++b) {
      h ^= static_cast<uint64_t>(v >> (8 * b)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  mix(num_layers), mix(num_experts), mix(top_k), mix(static_cast<int64_t>(choices.size()));
  for (const auto& step : choices)
    for (const auto& layer : step) {
      mix(static_cast<int64_t>(layer.size()));
      for (int32_t e : layer) mix(e);
    }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

nlohmann::ordered_json RoutingTrace::to_json() const {
  nlohmann::ordered_json steps = nlohmann::ordered_json::array();
  for (size_t s = 0; s < choices.size(); ++s)
    steps.push_back({{"step", s}, {"tokens", tokens_per_step.at(s)}, {"experts", choices[s]}});
  return {{"format", kTraceFormat}, {"layers", num_layers}, {"experts", num_experts}, {"top_k", top_k},
          {"order", "per step and layer: [tokens x top_k] chosen experts (before capacity), global token order"},
          {"digest", digest()}, {"steps", steps}};
}

RoutingTrace trace_from_results(const json& results, const std::string& strategy_name, const std::string& source) {
  if (!results.is_object() || !results.contains("strategies") || !results["strategies"].is_array())
    throw ConfigError("strategies", "must be an array (in '" + source + "')");
  const json& strategies = results["strategies"];
  int chosen = -1;
  for (size_t i = 0; i < strategies.size() && chosen < 0; ++i) {
    const json& s = strategies[i];
    const bool has = s.is_object() && s.contains("routing") && s["routing"].is_object() &&
                     s["routing"].contains("trace") && s["routing"]["trace"].is_object();
    if (has && (strategy_name.empty() || s.value("name", "") == strategy_name)) chosen = static_cast<int>(i);
  }
  if (chosen < 0)
    throw ConfigError("strategies", (strategy_name.empty() ? std::string("no strategy") : "no strategy named '" + strategy_name + "'") +
                                        " has routing.trace (in '" + source + "'; traces are recorded by run)");
  const std::string path = "strategies[" + std::to_string(chosen) + "].routing.trace";
  const json& t = strategies[chosen]["routing"]["trace"];
  if (t.value("format", "") != kTraceFormat)
    throw ConfigError(path + ".format", std::string("must be '") + kTraceFormat + "' (in '" + source + "')");
  RoutingTrace tr;
  tr.source = source;
  tr.num_layers = static_cast<int>(read_int(t, "layers", path, source));
  tr.num_experts = static_cast<int>(read_int(t, "experts", path, source));
  tr.top_k = static_cast<int>(read_int(t, "top_k", path, source));
  if (tr.num_layers < 1 || tr.num_experts < 1 || tr.top_k < 1 || tr.top_k > tr.num_experts)
    throw ConfigError(path, "has an invalid shape (layers, experts, top_k) (in '" + source + "')");
  if (!t.contains("steps") || !t["steps"].is_array() || t["steps"].empty())
    throw ConfigError(path + ".steps", "must be a non-empty array (in '" + source + "')");
  for (size_t s = 0; s < t["steps"].size(); ++s) {
    const std::string spath = path + ".steps[" + std::to_string(s) + "]";
    const json& step = t["steps"][s];
    const int64_t tokens = read_int(step, "tokens", spath, source);
    if (!step.contains("experts") || !step["experts"].is_array() || static_cast<int>(step["experts"].size()) != tr.num_layers)
      throw ConfigError(spath + ".experts", "must hold one array per layer (" + std::to_string(tr.num_layers) + ") (in '" + source + "')");
    std::vector<std::vector<int32_t>> layers;
    for (int l = 0; l < tr.num_layers; ++l) {
      const std::string lpath = spath + ".experts[" + std::to_string(l) + "]";
      const json& a = step["experts"][l];
      if (!a.is_array() || static_cast<int64_t>(a.size()) != tokens * tr.top_k)
        throw ConfigError(lpath, "must hold tokens x top_k = " + std::to_string(tokens * tr.top_k) + " experts (in '" + source + "')");
      std::vector<int32_t> v(a.size());
      for (size_t i = 0; i < a.size(); ++i) {
        if (!a[i].is_number_integer() || a[i].get<int64_t>() < 0 || a[i].get<int64_t>() >= tr.num_experts)
          throw ConfigError(lpath + "[" + std::to_string(i) + "]", "must be an expert index in [0, " +
                                                                    std::to_string(tr.num_experts) + "), got " + a[i].dump() +
                                                                    " (in '" + source + "')");
        v[i] = a[i].get<int32_t>();
        for (size_t j = i - i % tr.top_k; j < i; ++j)
          if (v[j] == v[i])
            throw ConfigError(lpath + "[" + std::to_string(i) + "]", "repeats expert " + std::to_string(v[i]) +
                                                                      " for one token (in '" + source + "')");
      }
      layers.push_back(std::move(v));
    }
    tr.tokens_per_step.push_back(tokens);
    tr.choices.push_back(std::move(layers));
  }
  return tr;
}

std::shared_ptr<const RoutingSource> RoutingSource::from_config(const Config& c) {
  std::shared_ptr<RoutingSource> s(new RoutingSource());
  s->spec_ = c.workload.routing;
  s->num_experts_ = c.model.experts;
  s->top_k_ = c.model.top_k;
  s->renormalize_ = c.model.renormalize;
  s->seed_ = c.model.seed;
  s->prompt_tokens_ = c.workload.prompt_tokens;
  s->batch_sequences_ = std::max(1, c.workload.batch_sequences);
  s->num_nodes_ = std::max(1, c.cluster.nodes);
  std::string path, name;
  if (s->spec_ == "gate") {
    s->kind_ = Kind::gate;
  } else if (parse_trace_spec(s->spec_, path, name)) {
    throw ConfigError("workload.routing", "'" + s->spec_ + "' needs its trace file loaded (RoutingSource::from_trace)");
  } else {
    s->kind_ = Kind::synthetic;
    s->dist_ = parse_routing_distribution(s->spec_, "workload.routing");
  }
  return s;
}

std::shared_ptr<const RoutingSource> RoutingSource::from_trace(const Config& c, RoutingTrace trace) {
  const std::string where = " (trace from '" + trace.source + "')";
  const auto& m = c.model;
  const auto& w = c.workload;
  if (trace.num_layers != m.layers || trace.num_experts != m.experts || trace.top_k != m.top_k)
    throw ConfigError("workload.routing", "the trace has " + std::to_string(trace.num_layers) + " layers x " +
                                              std::to_string(trace.num_experts) + " experts, top-" + std::to_string(trace.top_k) +
                                              " but the model has " + std::to_string(m.layers) + " layers x " + std::to_string(m.experts) +
                                              " experts, top-" + std::to_string(m.top_k) + where);
  if (static_cast<int>(trace.choices.size()) < 1 + w.decode_steps)
    throw ConfigError("workload.routing", "the trace has " + std::to_string(trace.choices.size()) +
                                              " steps but the workload needs 1 prefill + " + std::to_string(w.decode_steps) +
                                              " decode steps" + where);
  for (size_t s = 0; s < trace.choices.size(); ++s) {
    const int64_t want = int64_t(w.batch_sequences) * (s == 0 ? w.prompt_tokens : 1);
    if (trace.tokens_per_step[s] != want)
      throw ConfigError("workload.routing", "trace step " + std::to_string(s) + " has " + std::to_string(trace.tokens_per_step[s]) +
                                                " tokens but the workload routes " + std::to_string(want) + where);
  }
  Config gate_config = c;
  gate_config.workload.routing = "gate";
  std::shared_ptr<RoutingSource> s(new RoutingSource(*from_config(gate_config)));
  s->spec_ = w.routing;
  s->kind_ = Kind::trace;
  s->trace_ = std::move(trace);
  return s;
}

std::vector<float> RoutingSource::synthetic_scores(const TokenBlock& b) const {
  MOE_REQUIRE(kind_ == Kind::synthetic, "synthetic_scores: the routing source is not synthetic");
  const int E = num_experts_;
  std::vector<float> scores(static_cast<size_t>(b.rows()) * E);
  const uint64_t key = stream_key(seed_, (uint64_t(b.layer) << 32) | (kSyntheticRoutingKind << 16));
  std::vector<double> logw(E);
  int cached_epoch = -1, cached_node = -1;
  std::vector<double> popularity, g(E);
  for (int64_t r = 0; r < b.rows(); ++r) {
    const int seq = b.seq0 + static_cast<int>(r / b.new_len);
    const int pos = b.pos0 + static_cast<int>(r % b.new_len);
    const int epoch = drift_epoch(dist_, step_of(pos)), node = node_of_sequence(seq);
    if (epoch != cached_epoch || node != cached_node) {
      if (epoch != cached_epoch) popularity = popularity_at(dist_, b.layer, E, seed_, epoch);
      const std::vector<double> shares = local_shares(dist_, popularity, node, num_nodes_);
      for (int e = 0; e < E; ++e) logw[e] = shares[e] > 0 ? std::log(shares[e]) : -INFINITY;
      cached_epoch = epoch, cached_node = node;
    }
    // Gumbel top-k: log w_e + G_e with G_e = -log(-log u), u from the token's own stream positions.
    const uint64_t token = (uint64_t(uint32_t(seq)) << 32) | uint32_t(pos);
    double best = -INFINITY;
    float* row = scores.data() + static_cast<size_t>(r) * E;
    for (int e = 0; e < E; ++e) {
      g[e] = logw[e] - std::log(-std::log(uniform_at(key, token * uint64_t(E) + uint64_t(e))));
      best = std::max(best, g[e]);
    }
    for (int e = 0; e < E; ++e) row[e] = static_cast<float>(std::exp(g[e] - best));  // (0, 1], 0 for zero shares
  }
  return scores;
}

Routing RoutingSource::route(const std::vector<float>& probs, const TokenBlock& b,
                             const std::vector<double>& multipliers) const {
  const int n = static_cast<int>(b.rows());
  switch (kind_) {
    case Kind::gate:
      return route_top_k(probs, n, num_experts_, top_k_, multipliers, renormalize_);
    case Kind::synthetic:
      return route_top_k_scored(synthetic_scores(b), probs, n, num_experts_, top_k_, multipliers, renormalize_);
    case Kind::trace: {
      const int step = step_of(b.pos0);
      MOE_REQUIRE(step < static_cast<int>(trace_.choices.size()), "trace replay: step beyond the trace");
      const std::vector<int32_t>& all = trace_.choices[step].at(b.layer);
      const size_t first = static_cast<size_t>(int64_t(b.seq0) * b.new_len) * top_k_;
      MOE_REQUIRE(first + static_cast<size_t>(n) * top_k_ <= all.size(), "trace replay: tokens beyond the trace");
      const std::vector<int32_t> experts(all.begin() + first, all.begin() + first + static_cast<size_t>(n) * top_k_);
      return route_forced(experts, probs, n, num_experts_, top_k_, renormalize_);
    }
  }
  MOE_REQUIRE(false, "unknown routing source");
  return {};
}

}  // namespace moe
