// Expected routing for placement (LoadProfile: tokens[layer][source rank][expert]) from a routing
// distribution (core/routing_distribution.hpp) or from the per-expert token counts of an earlier
// run's results JSON.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/routing_distribution.hpp"
#include "placement/placement.hpp"
#include "topology/topology.hpp"

namespace moe {

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
