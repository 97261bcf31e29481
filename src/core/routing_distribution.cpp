// The routing-distribution grammar (uniform, zipf:s, hot:f, local:p, drift:n) and the expert
// popularity each distribution defines.
#include "core/routing_distribution.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <sstream>

#include "core/error.hpp"
#include "core/hash.hpp"

namespace moe {
namespace {

// Stream for the per-layer popularity permutation (weight kinds use 1..8 in bits 16..31).
constexpr uint64_t kPopularityKind = 0x51;

bool parse_number(const std::string& s, double& out) {
  if (s.empty()) return false;
  try {
    size_t used = 0;
    out = std::stod(s, &used);
    return used == s.size() && std::isfinite(out);
  } catch (const std::exception&) {
    return false;
  }
}

// "name:value" -> value, checked against [lo, hi].
double parse_param(const std::string& item, const std::string& name, double lo, double hi, const std::string& path,
                   const std::string& spec) {
  double v = 0;
  if (!parse_number(item.substr(name.size() + 1), v) || v < lo || v > hi) {
    std::ostringstream os;
    os << "'" << item << "'" << (item == spec ? "" : " in '" + spec + "'") << " needs a number ";
    if (std::isinf(hi))
      os << ">= " << lo;
    else
      os << "in [" << lo << ", " << hi << "]";
    throw ConfigError(path, os.str());
  }
  return v;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

bool is_routing_distribution(const std::string& spec) {
  try {
    parse_routing_distribution(spec, "");
    return true;
  } catch (const ConfigError&) {
    return false;
  }
}

RoutingDistribution parse_routing_distribution(const std::string& spec, const std::string& path) {
  RoutingDistribution d;
  d.text = spec;
  std::vector<std::string> items;
  std::stringstream ss(spec);
  for (std::string item; std::getline(ss, item, ',');) items.push_back(item);
  if (items.empty() || items.size() > 3)
    throw ConfigError(path, "'" + spec + "' is not a routing distribution (uniform | zipf:s | hot:f, optionally ,local:p and ,drift:n)");
  const std::string& base = items[0];
  const double inf = std::numeric_limits<double>::infinity();
  if (base == "uniform") {
    d.kind = RoutingDistribution::Kind::uniform;
  } else if (starts_with(base, "zipf:")) {
    d.kind = RoutingDistribution::Kind::zipf;
    d.param = parse_param(base, "zipf", 0, inf, path, spec);
  } else if (starts_with(base, "hot:")) {
    d.kind = RoutingDistribution::Kind::hot;
    d.param = parse_param(base, "hot", 0, 1, path, spec);
  } else {
    throw ConfigError(path, "'" + spec + "' is not a routing distribution (uniform | zipf:s | hot:f, optionally ,local:p and ,drift:n)");
  }
  bool has_local = false, has_drift = false;
  for (size_t i = 1; i < items.size(); ++i) {
    const std::string& item = items[i];
    if (starts_with(item, "local:") && !has_local) {
      d.locality = parse_param(item, "local", 0, 1, path, spec);
      has_local = true;
    } else if (starts_with(item, "drift:") && !has_drift) {
      const double n = parse_param(item, "drift", 1, 1e9, path, spec);
      if (n != std::floor(n)) throw ConfigError(path, "'" + item + "' in '" + spec + "' needs a whole number of steps");
      d.drift_steps = static_cast<int>(n);
      has_drift = true;
    } else {
      throw ConfigError(path, "'" + spec + "': after the distribution only ',local:p' and ',drift:n' may follow (each once), got '" +
                                  item + "'");
    }
  }
  return d;
}

int drift_epoch(const RoutingDistribution& d, int step) { return d.drift_steps > 0 ? step / d.drift_steps : 0; }

std::vector<double> base_popularity(const RoutingDistribution& d, int layer, int num_experts, uint64_t seed) {
  MOE_REQUIRE(num_experts > 0, "base_popularity: no experts");
  std::vector<double> p(num_experts, 1.0 / num_experts);
  if (d.kind == RoutingDistribution::Kind::zipf) {
    // Fisher-Yates on expert ids with the generator's keyed uniform stream: deterministic per layer.
    std::vector<int> perm(num_experts);
    std::iota(perm.begin(), perm.end(), 0);
    const uint64_t key = stream_key(seed, (uint64_t(layer) << 32) | (kPopularityKind << 16));
    for (int i = num_experts - 1; i > 0; --i) {
      const int j = std::min(i, static_cast<int>(uniform_at(key, uint64_t(i)) * (i + 1)));
      std::swap(perm[i], perm[j]);
    }
    double sum = 0;
    for (int i = 0; i < num_experts; ++i) sum += std::pow(double(i + 1), -d.param);
    for (int i = 0; i < num_experts; ++i) p[perm[i]] = std::pow(double(i + 1), -d.param) / sum;
  } else if (d.kind == RoutingDistribution::Kind::hot) {
    const int hot = std::max(1, num_experts / 8);
    if (hot < num_experts)
      for (int e = 0; e < num_experts; ++e) p[e] = e < hot ? d.param / hot : (1 - d.param) / (num_experts - hot);
  }
  return p;
}

std::vector<double> popularity_at(const RoutingDistribution& d, int layer, int num_experts, uint64_t seed, int epoch) {
  const std::vector<double> base = base_popularity(d, layer, num_experts, seed);
  if (epoch == 0) return base;
  // The popularity ranking moves by max(1, E/8) experts per epoch: for hot:f the hot set is the next group.
  const int64_t shift = (int64_t(epoch) * std::max(1, num_experts / 8)) % num_experts;
  std::vector<double> p(num_experts);
  for (int e = 0; e < num_experts; ++e) p[(e + shift) % num_experts] = base[e];
  return p;
}

std::vector<double> local_shares(const RoutingDistribution& d, const std::vector<double>& popularity, int node, int num_nodes) {
  const int num_experts = static_cast<int>(popularity.size());
  if (d.locality <= 0) return popularity;
  std::vector<bool> home(num_experts, false);
  if (num_experts >= num_nodes) {
    for (int e = node % num_nodes; e < num_experts; e += num_nodes) home[e] = true;
  } else {
    home[node % num_experts] = true;
  }
  double home_sum = 0;
  int home_count = 0;
  for (int e = 0; e < num_experts; ++e)
    if (home[e]) home_sum += popularity[e], ++home_count;
  std::vector<double> s(num_experts);
  for (int e = 0; e < num_experts; ++e) {
    const double local = !home[e] ? 0 : home_sum > 0 ? popularity[e] / home_sum : 1.0 / home_count;
    s[e] = (1 - d.locality) * popularity[e] + d.locality * local;
  }
  return s;
}

}  // namespace moe
