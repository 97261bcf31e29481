// Plan file writing and strict reading (every error names the JSON path and the file).
#include "placement/plan_json.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "core/atomic_file.hpp"
#include "core/error.hpp"

namespace moe {
namespace {

using json = nlohmann::json;

std::string in(const std::string& source) { return " (in plan '" + source + "')"; }

int read_int(const json& v, const std::string& path, const std::string& source, int lo, int hi) {
  if (!v.is_number_integer())
    throw ConfigError(path, "must be an integer, got " + v.dump() + in(source));
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi)
    throw ConfigError(path, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                                std::to_string(x) + in(source));
  return static_cast<int>(x);
}

// An array of arrays of ints in [0, hi].
std::vector<std::vector<int>> read_lists(const json& v, const std::string& path, const std::string& source, int hi) {
  if (!v.is_array()) throw ConfigError(path, "must be an array of arrays, got " + std::string(v.type_name()) + in(source));
  std::vector<std::vector<int>> out;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string p = path + "[" + std::to_string(i) + "]";
    if (!v[i].is_array()) throw ConfigError(p, "must be an array, got " + v[i].dump() + in(source));
    std::vector<int> row;
    for (size_t k = 0; k < v[i].size(); ++k) row.push_back(read_int(v[i][k], p + "[" + std::to_string(k) + "]", source, 0, hi));
    out.push_back(std::move(row));
  }
  return out;
}

void only_keys(const json& j, const std::string& path, const std::set<std::string>& allowed, const std::string& source) {
  for (const auto& item : j.items())
    if (!allowed.count(item.key()))
      throw ConfigError(path.empty() ? item.key() : path + "." + item.key(), "unknown key '" + item.key() + "'" + in(source));
}

const json& need(const json& j, const std::string& key, const std::string& path, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end()) throw ConfigError(path.empty() ? key : path + "." + key, "is required but missing" + in(source));
  return *it;
}

}  // namespace

nlohmann::ordered_json placement_to_json(const Placement& p, int num_ranks, const std::string& load_profile, int expert_tp) {
  nlohmann::ordered_json o;
  o["schema_version"] = 1;
  o["algorithm"] = p.algorithm;
  o["num_ranks"] = num_ranks;
  if (expert_tp > 1) o["expert_tp"] = expert_tp;
  if (!load_profile.empty()) o["load_profile"] = load_profile;
  nlohmann::ordered_json layers = nlohmann::ordered_json::array();
  for (const LayerPlacement& lp : p.layers) layers.push_back({{"replicas", lp.replicas}, {"slots", lp.slots}});
  o["layers"] = layers;
  return o;
}

Placement placement_from_json(const json& j, const std::string& source) {
  if (!j.is_object()) throw ConfigError("", "a plan must be a JSON object" + in(source));
  // "metrics" (written by place, per layer and in total) is for scripts comparing plans; not read.
  only_keys(j, "", {"schema_version", "algorithm", "num_ranks", "expert_tp", "load_profile", "layers", "metrics"}, source);
  const json& version = need(j, "schema_version", "", source);
  if (!version.is_number_integer() || version.get<int64_t>() != 1)
    throw ConfigError("schema_version", "must be 1, got " + version.dump() + in(source));
  const json& algorithm = need(j, "algorithm", "", source);
  if (!algorithm.is_string()) throw ConfigError("algorithm", "must be a string, got " + algorithm.dump() + in(source));
  if (j.contains("load_profile") && !j["load_profile"].is_string())
    throw ConfigError("load_profile", "must be a string, got " + j["load_profile"].dump() + in(source));
  const int G = read_int(need(j, "num_ranks", "", source), "num_ranks", source, 1, 1 << 24);
  if (j.contains("expert_tp")) read_int(j["expert_tp"], "expert_tp", source, 1, 1 << 24);
  const json& layers = need(j, "layers", "", source);
  if (!layers.is_array() || layers.empty())
    throw ConfigError("layers", "must be a non-empty array of layers" + in(source));

  Placement p;
  p.algorithm = algorithm.get<std::string>();
  for (size_t l = 0; l < layers.size(); ++l) {
    const std::string lpath = "layers[" + std::to_string(l) + "]";
    const json& layer = layers[l];
    if (!layer.is_object()) throw ConfigError(lpath, "must be an object" + in(source));
    only_keys(layer, lpath, {"replicas", "slots", "metrics"}, source);
    LayerPlacement lp;
    lp.num_ranks = G;
    lp.replicas = read_lists(need(layer, "replicas", lpath, source), lpath + ".replicas", source, G - 1);
    lp.num_experts = static_cast<int>(lp.replicas.size());
    if (lp.num_experts == 0) throw ConfigError(lpath + ".replicas", "must list at least one expert" + in(source));
    if (!p.layers.empty() && p.layers.front().num_experts != lp.num_experts)
      throw ConfigError(lpath + ".replicas", "has " + std::to_string(lp.num_experts) + " experts, layer 0 has " +
                                                 std::to_string(p.layers.front().num_experts) + in(source));
    lp.slots = read_lists(need(layer, "slots", lpath, source), lpath + ".slots", source, lp.num_experts - 1);
    if (static_cast<int>(lp.slots.size()) != G)
      throw ConfigError(lpath + ".slots", "must have one entry per rank (num_ranks = " + std::to_string(G) + "), got " +
                                              std::to_string(lp.slots.size()) + in(source));
    const int limit = std::max(1, (lp.num_experts + G - 1) / G);
    for (int r = 0; r < G; ++r) {
      const std::string spath = lpath + ".slots[" + std::to_string(r) + "]";
      if (static_cast<int>(lp.slots[r].size()) > limit)
        throw ConfigError(spath, "rank hosts " + std::to_string(lp.slots[r].size()) + " experts, at most " +
                                     std::to_string(limit) + " allowed (ceil(experts / ranks))" + in(source));
      for (size_t i = 0; i < lp.slots[r].size(); ++i) {
        const int e = lp.slots[r][i];
        if (std::count(lp.slots[r].begin(), lp.slots[r].end(), e) > 1)
          throw ConfigError(spath, "hosts expert " + std::to_string(e) + " twice" + in(source));
        const auto& reps = lp.replicas[e];
        if (std::find(reps.begin(), reps.end(), r) == reps.end())
          throw ConfigError(spath + "[" + std::to_string(i) + "]", "rank " + std::to_string(r) + " hosts expert " +
                                                                        std::to_string(e) + " but replicas[" + std::to_string(e) +
                                                                        "] does not list it" + in(source));
      }
    }
    for (int e = 0; e < lp.num_experts; ++e) {
      const std::string rpath = lpath + ".replicas[" + std::to_string(e) + "]";
      const auto& reps = lp.replicas[e];
      if (reps.empty()) throw ConfigError(rpath, "expert " + std::to_string(e) + " is not placed" + in(source));
      if (!std::is_sorted(reps.begin(), reps.end()) || std::adjacent_find(reps.begin(), reps.end()) != reps.end())
        throw ConfigError(rpath, "ranks must be strictly ascending" + in(source));
      for (int r : reps)
        if (lp.slot_of(r, e) < 0)
          throw ConfigError(rpath, "lists rank " + std::to_string(r) + " but slots[" + std::to_string(r) +
                                       "] does not host expert " + std::to_string(e) + in(source));
    }
    p.layers.push_back(std::move(lp));
  }
  check_placement(p, G);  // the same invariants every placer satisfies (already implied above)
  return p;
}

void check_plan_shape(const Placement& p, int num_layers, int num_experts, int num_ranks, const std::string& source,
                      const std::string& units) {
  if (static_cast<int>(p.layers.size()) != num_layers)
    throw ConfigError("layers", "plan has " + std::to_string(p.layers.size()) + " layers, model.layers is " +
                                    std::to_string(num_layers) + in(source));
  if (p.layers.front().num_ranks != num_ranks)
    throw ConfigError("num_ranks", "plan is for " + std::to_string(p.layers.front().num_ranks) + " " + units +
                                       ", the run has " + std::to_string(num_ranks) + in(source));
  if (p.layers.front().num_experts != num_experts)
    throw ConfigError("layers[0].replicas", "plan has " + std::to_string(p.layers.front().num_experts) +
                                                " experts, model.experts is " + std::to_string(num_experts) + in(source));
}

void write_plan_file(const std::string& path, const Placement& p, int num_ranks, const std::string& load_profile) {
  write_file_atomic(path, placement_to_json(p, num_ranks, load_profile).dump() + "\n");
}

Placement read_plan_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw ConfigError("", "cannot open plan file '" + path + "'");
  json j;
  try {
    j = json::parse(f);
  } catch (const json::parse_error& e) {
    throw ConfigError("", "invalid JSON in plan '" + path + "': " + e.what());
  }
  return placement_from_json(j, path);
}

}  // namespace moe
