// Load profiles for placement: expected per-source routing from a routing distribution, and
// per-expert counts from an earlier results JSON.
#include "placement/load_profile.hpp"

#include <fstream>
#include <utility>

#include "core/error.hpp"

namespace moe {
namespace {

using json = nlohmann::json;

// Shares capped at `cap` each, the excess spread over the uncapped experts in proportion to their
// shares (evenly when those are all zero). Input sums to 1; output sums to 1 when cap * E >= 1.
void cap_shares(std::vector<double>& p, double cap) {
  const size_t n = p.size();
  std::vector<bool> capped(n, false);
  for (size_t iter = 0; iter <= n; ++iter) {
    double excess = 0, free_sum = 0;
    size_t free_count = 0;
    for (size_t e = 0; e < n; ++e) {
      if (!capped[e] && p[e] > cap * (1 + 1e-12)) {
        excess += p[e] - cap;
        p[e] = cap;
        capped[e] = true;
      }
    }
    if (excess <= 0) return;
    for (size_t e = 0; e < n; ++e)
      if (!capped[e]) free_sum += p[e], ++free_count;
    if (free_count == 0) return;
    for (size_t e = 0; e < n; ++e)
      if (!capped[e]) p[e] += free_sum > 0 ? excess * p[e] / free_sum : excess / double(free_count);
  }
}

const json& member(const json& j, const std::string& key, const std::string& path, const std::string& source) {
  if (!j.is_object()) throw ConfigError(path, "must be an object (in '" + source + "')");
  auto it = j.find(key);
  if (it == j.end()) throw ConfigError(path.empty() ? key : path + "." + key, "is missing (in '" + source + "')");
  return *it;
}

std::vector<double> read_counts(const json& j, int num_experts, const std::string& path, const std::string& source) {
  if (!j.is_array() || static_cast<int>(j.size()) != num_experts)
    throw ConfigError(path, "must be an array of " + std::to_string(num_experts) + " counts (model.experts), got " +
                                (j.is_array() ? std::to_string(j.size()) + " entries" : std::string(j.type_name())) +
                                " (in '" + source + "')");
  std::vector<double> out(num_experts);
  for (int e = 0; e < num_experts; ++e) {
    if (!j[e].is_number() || j[e].get<double>() < 0)
      throw ConfigError(path + "[" + std::to_string(e) + "]",
                        "must be a non-negative number, got " + j[e].dump() + " (in '" + source + "')");
    out[e] = j[e].get<double>();
  }
  return out;
}

}  // namespace

LoadProfile profile_from_distribution(const RoutingDistribution& d, int num_layers, int num_experts, int top_k,
                                      const Topology& topo, double tokens_per_rank, uint64_t seed) {
  MOE_REQUIRE(top_k >= 1 && top_k <= num_experts, "profile_from_distribution: top_k outside [1, experts]");
  const int G = topo.num_ranks();
  const int N = topo.nodes();
  const double per_rank = tokens_per_rank * top_k;
  LoadProfile prof;
  prof.tokens.resize(num_layers);
  for (int l = 0; l < num_layers; ++l) {
    const std::vector<double> base = base_popularity(d, l, num_experts, seed);
    std::vector<std::vector<double>> node_shares(N);
    for (int n = 0; n < N; ++n) {
      std::vector<double> s = local_shares(d, base, n, N);
      cap_shares(s, 1.0 / top_k);
      node_shares[n] = std::move(s);
    }
    prof.tokens[l].resize(G);
    for (int r = 0; r < G; ++r) {
      const auto& s = node_shares[topo.node_of(r)];
      auto& row = prof.tokens[l][r];
      row.resize(num_experts);
      for (int e = 0; e < num_experts; ++e) row[e] = per_rank * s[e];
    }
  }
  return prof;
}

LoadProfile profile_from_results(const json& results, int num_layers, int num_experts, const Topology& topo,
                                 const std::string& source, const std::string& strategy) {
  const json& strategies = member(results, "strategies", "", source);
  if (!strategies.is_array()) throw ConfigError("strategies", "must be an array (in '" + source + "')");
  int chosen = -1;
  if (!strategy.empty()) {
    std::string names;
    for (size_t i = 0; i < strategies.size() && chosen < 0; ++i) {
      const std::string name = strategies[i].is_object() ? strategies[i].value("name", "") : "";
      if (name == strategy) chosen = static_cast<int>(i);
      names += (names.empty() ? "" : ", ") + name;
    }
    if (chosen < 0)
      throw ConfigError("--load-profile", "no strategy named '" + strategy + "' in '" + source + "' (it has " + names + ")");
    const json& s = strategies[chosen];
    if (!(s.contains("load") && s["load"].is_object() && s["load"].contains("layers")))
      throw ConfigError("strategies[" + std::to_string(chosen) + "].load.layers", "is missing (in '" + source + "')");
  }
  for (int pass = 0; pass < 2 && chosen < 0; ++pass)
    for (size_t i = 0; i < strategies.size() && chosen < 0; ++i) {
      const json& s = strategies[i];
      const bool has_load = s.is_object() && s.contains("load") && s["load"].is_object() && s["load"].contains("layers");
      if (has_load && (pass == 1 || s.value("kind", "") == "ep")) chosen = static_cast<int>(i);
    }
  if (chosen < 0) throw ConfigError("strategies", "no strategy has load.layers (in '" + source + "')");
  const std::string spath = "strategies[" + std::to_string(chosen) + "].load.layers";
  const json& layers = strategies[chosen]["load"]["layers"];
  if (!layers.is_array() || static_cast<int>(layers.size()) != num_layers)
    throw ConfigError(spath, "must hold " + std::to_string(num_layers) + " layers (model.layers), got " +
                                 (layers.is_array() ? std::to_string(layers.size()) : std::string(layers.type_name())) +
                                 " (in '" + source + "')");
  const int G = topo.num_ranks();
  LoadProfile prof;
  prof.tokens.resize(num_layers);
  for (int l = 0; l < num_layers; ++l) {
    const std::string lpath = spath + "[" + std::to_string(l) + "]";
    const json& layer = layers[l];
    if (layer.is_object() && layer.contains("tokens_per_source_expert")) {
      const json& per = layer["tokens_per_source_expert"];
      const std::string ppath = lpath + ".tokens_per_source_expert";
      if (!per.is_array() || static_cast<int>(per.size()) != G)
        throw ConfigError(ppath, "must hold one row per rank (" + std::to_string(G) + ") (in '" + source + "')");
      for (int r = 0; r < G; ++r)
        prof.tokens[l].push_back(read_counts(per[r], num_experts, ppath + "[" + std::to_string(r) + "]", source));
      continue;
    }
    const std::vector<double> total =
        read_counts(member(layer, "tokens_per_expert", lpath, source), num_experts, lpath + ".tokens_per_expert", source);
    std::vector<double> row(num_experts);
    for (int e = 0; e < num_experts; ++e) row[e] = total[e] / G;
    prof.tokens[l].assign(G, row);
  }
  return prof;
}

LoadProfile profile_from_results_file(const std::string& spec, int num_layers, int num_experts, const Topology& topo) {
  const size_t hash = spec.rfind('#');
  const std::string path = hash == std::string::npos ? spec : spec.substr(0, hash);
  const std::string strategy = hash == std::string::npos ? "" : spec.substr(hash + 1);
  if (hash != std::string::npos && strategy.empty())
    throw ConfigError("--load-profile", "'" + spec + "': a strategy name must follow '#'");
  std::ifstream in(path);
  if (!in) throw ConfigError("--load-profile", "cannot open results file '" + path + "'");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::parse_error& e) {
    throw ConfigError("--load-profile", "invalid JSON in '" + path + "': " + e.what());
  }
  return profile_from_results(j, num_layers, num_experts, topo, path, strategy);
}

const std::vector<std::vector<double>>& profile_layer(const LoadProfile& p, int layer, int num_ranks, int num_experts,
                                                      std::vector<std::vector<double>>& uniform) {
  if (p.tokens.empty()) {
    if (uniform.empty()) uniform.assign(num_ranks, std::vector<double>(num_experts, 1.0));
    return uniform;
  }
  const std::string where = "load profile layer " + std::to_string(layer);
  MOE_REQUIRE(layer >= 0 && layer < static_cast<int>(p.tokens.size()), where + " is missing");
  const auto& t = p.tokens[layer];
  MOE_REQUIRE(static_cast<int>(t.size()) == num_ranks, where + ": expected " + std::to_string(num_ranks) + " source ranks");
  for (const auto& row : t)
    MOE_REQUIRE(static_cast<int>(row.size()) == num_experts, where + ": expected " + std::to_string(num_experts) + " experts");
  return t;
}

}  // namespace moe
