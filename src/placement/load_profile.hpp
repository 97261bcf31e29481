// Expected routing for placement (LoadProfile: tokens[layer][source rank][expert]) from a synthetic
// distribution string (uniform, zipf:s, hot:f, each optionally ",local:p") or from the per-expert
// token counts of an earlier run's results JSON.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "placement/placement.hpp"
#include "topology/topology.hpp"

namespace moe {

// A routing distribution. Grammar: BASE[,local:p] with BASE one of
//   uniform      every expert equally likely
//   zipf:s       popularity of the expert at popularity rank i (1-based) proportional to 1/i^s, s >= 0;
//                the expert -> rank permutation is derived from the seed and the layer
//   hot:f        fraction f in [0,1] of assignments go to the hot set (experts 0 .. max(1,E/8)-1),
//                the rest uniformly to the other experts
//   local:p      p in [0,1]: fraction of a source's assignments that go to its node's home experts
//                (e with e % nodes == node % nodes; when E < nodes, expert node % E), split in
//                proportion to BASE; the remaining 1-p follow BASE over all experts
//   drift:n      every n steps (prefill = step 0, decode step t = step t+1) the popularity moves
//                max(1, E/8) experts up: expert e takes the popularity expert e - shift had
// Placement profiles plan for epoch 0 (the prefill, which carries most tokens).
struct RoutingDistribution {
  enum class Kind { uniform, zipf, hot };
  Kind kind = Kind::uniform;
  double param = 0;      // zipf exponent s, or hot fraction f
  double locality = 0;   // local:p (0 = none)
  int drift_steps = 0;   // drift:n (0 = none)
  std::string text;      // the spec as given
};

// True for the strings parse_routing_distribution accepts ("gate" is not a distribution).
bool is_routing_distribution(const std::string& spec);
// Throws ConfigError(path, reason) on malformed specs.
RoutingDistribution parse_routing_distribution(const std::string& spec, const std::string& path);

// Per-layer expert popularity of the base distribution (sums to 1): [E].
std::vector<double> base_popularity(const RoutingDistribution& d, int layer, int num_experts, uint64_t seed);

// Popularity at drift epoch `epoch` (step / drift_steps; 0 without drift): [E], sums to 1.
std::vector<double> popularity_at(const RoutingDistribution& d, int layer, int num_experts, uint64_t seed, int epoch);
int drift_epoch(const RoutingDistribution& d, int step);

// Shares of the experts for sources on `node` under local:p (the popularity itself without locality).
std::vector<double> local_shares(const RoutingDistribution& d, const std::vector<double>& popularity, int node,
                                 int num_nodes);

// Every source rank contributes tokens_per_rank * top_k assignments per layer. Expected shares are
// capped at 1/top_k per expert (a token picks k distinct experts), the excess spread in proportion
// over the other experts.
LoadProfile profile_from_distribution(const RoutingDistribution& d, int num_layers, int num_experts, int top_k,
                                      const Topology& topo, double tokens_per_rank, uint64_t seed);

// From an earlier results JSON: the strategy named `strategy`, else the first strategy of kind "ep"
// with load data (else the first with any), strategies[i].load.layers[l].tokens_per_expert ([E]
// global counts), spread evenly over the source ranks; layers[l].tokens_per_source_expert
// ([ranks][E]) is used instead when present. Errors name the JSON path and `source_name`.
LoadProfile profile_from_results(const nlohmann::json& results, int num_layers, int num_experts, const Topology& topo,
                                 const std::string& source_name, const std::string& strategy = "");
// `spec` is FILE or FILE#strategy (as workload.routing's trace:FILE#strategy).
LoadProfile profile_from_results_file(const std::string& spec, int num_layers, int num_experts, const Topology& topo);

// Tokens of layer `l` as [ranks][E]: the profile's own rows, or `uniform` (filled on first use with 1
// per source and expert) when the profile is empty. Checks shapes (throws Error naming the layer).
const std::vector<std::vector<double>>& profile_layer(const LoadProfile& p, int layer, int num_ranks, int num_experts,
                                                      std::vector<std::vector<double>>& uniform);

}  // namespace moe
