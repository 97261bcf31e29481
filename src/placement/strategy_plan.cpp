// Placement of an ep strategy from its config (used by the runtime and the cost model alike).
#include "placement/strategy_plan.hpp"

#include "core/error.hpp"
#include "placement/load_profile.hpp"
#include "placement/placers.hpp"

namespace moe {

std::string placement_profile_spec(const Config& c, const StrategyConfig& s) {
  if (!s.placement_profile.empty()) return s.placement_profile;
  return is_routing_distribution(c.workload.routing) ? c.workload.routing : "";
}

LoadProfile distribution_load_profile(const Config& c, const std::string& spec, const Topology& topo,
                                      const std::string& path) {
  // One iteration's tokens (prefill + decode) per source rank.
  const double tokens_per_rank = double(c.workload.batch_sequences) / topo.num_ranks() *
                                 (c.workload.prompt_tokens + c.workload.decode_steps);
  return profile_from_distribution(parse_routing_distribution(spec, path), c.model.layers, c.model.experts,
                                   c.model.top_k, topo, tokens_per_rank, c.model.seed);
}

LoadProfile placement_load_profile(const Config& c, const StrategyConfig& s, const Topology& topo) {
  const std::string spec = placement_profile_spec(c, s);
  if (spec.empty()) return {};
  return distribution_load_profile(c, spec, topo, s.placement_profile.empty() ? "workload.routing" : "placement_profile");
}

Topology expert_group_topology(const ClusterConfig& cluster, int expert_tp) {
  MOE_REQUIRE(expert_tp > 0 && cluster.gpus_per_node % expert_tp == 0, "expert_tp must divide cluster.gpus_per_node");
  return Topology(cluster.nodes, cluster.gpus_per_node / expert_tp);
}

LoadProfile group_load_profile(const LoadProfile& ranks, int expert_tp) {
  if (expert_tp == 1 || ranks.tokens.empty()) return ranks;
  LoadProfile out;
  for (const auto& layer : ranks.tokens) {
    MOE_REQUIRE(layer.size() % size_t(expert_tp) == 0, "group_load_profile: ranks must divide into expert-TP groups");
    std::vector<std::vector<double>> groups(layer.size() / expert_tp, std::vector<double>(layer.empty() ? 0 : layer[0].size(), 0));
    for (size_t r = 0; r < layer.size(); ++r)
      for (size_t e = 0; e < layer[r].size(); ++e) groups[r / expert_tp][e] += layer[r][e];
    out.tokens.push_back(std::move(groups));
  }
  return out;
}

LoadProfile shard_load_profile(const LoadProfile& ranks, int expert_tp) {
  if (expert_tp == 1 || ranks.tokens.empty()) return ranks;
  LoadProfile out = ranks;
  for (auto& layer : out.tokens)
    for (auto& row : layer) {
      std::vector<double> shards;
      shards.reserve(row.size() * expert_tp);
      for (double t : row) shards.insert(shards.end(), expert_tp, t);
      row = std::move(shards);
    }
  return out;
}

Placement shard_placement(const Placement& groups, int expert_tp) {
  if (expert_tp == 1) return groups;
  Placement out;
  out.algorithm = groups.algorithm;
  for (const LayerPlacement& g : groups.layers) {
    LayerPlacement lp;
    lp.num_experts = g.num_experts * expert_tp;
    lp.num_ranks = g.num_ranks * expert_tp;
    lp.replicas.resize(lp.num_experts);
    lp.slots.resize(lp.num_ranks);
    for (int e = 0; e < g.num_experts; ++e)
      for (int m = 0; m < expert_tp; ++m)
        for (int grp : g.replicas[e]) lp.replicas[e * expert_tp + m].push_back(grp * expert_tp + m);
    for (int grp = 0; grp < g.num_ranks; ++grp)
      for (int m = 0; m < expert_tp; ++m)
        for (int e : g.slots[grp]) lp.slots[grp * expert_tp + m].push_back(e * expert_tp + m);
    out.layers.push_back(std::move(lp));
  }
  return out;
}

Topology placement_unit_topology(const Config& c, const StrategyConfig& s) {
  return s.expert_tp > 1 ? expert_group_topology(c.cluster, s.expert_tp) : Topology::from_config(c.cluster);
}

std::unique_ptr<Placer> strategy_placer(const Config& c, const std::string& algorithm) {
  if (algorithm != "topology_aware") return make_placer(algorithm);
  TopologyAwareOptions o;
  o.nics_per_node = c.cluster.inter_node.nics_per_node;
  return make_topology_aware_placer(o);
}

Placement unit_plan_for_strategy(const Config& c, const StrategyConfig& s, const Topology& topo) {
  const LoadProfile units = group_load_profile(placement_load_profile(c, s, topo), s.expert_tp);
  return strategy_placer(c, s.placement)->place(c.model.layers, c.model.experts, placement_unit_topology(c, s), units);
}

Placement plan_for_strategy(const Config& c, const StrategyConfig& s, const Topology& topo) {
  return shard_placement(unit_plan_for_strategy(c, s, topo), s.expert_tp);
}

}  // namespace moe
