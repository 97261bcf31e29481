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

Placement plan_for_strategy(const Config& c, const StrategyConfig& s, const Topology& topo) {
  if (s.expert_tp > 1) {
    StrategyConfig groups = s;
    groups.expert_tp = 1;
    Config gc = c;
    gc.cluster.gpus_per_node /= s.expert_tp;
    return shard_placement(plan_for_strategy(gc, groups, expert_group_topology(c.cluster, s.expert_tp)), s.expert_tp);
  }
  std::unique_ptr<Placer> placer;
  if (s.placement == "topology_aware") {
    TopologyAwareOptions o;
    o.nics_per_node = c.cluster.inter_node.nics_per_node;
    placer = make_topology_aware_placer(o);
  } else {
    placer = make_placer(s.placement);
  }
  return placer->place(c.model.layers, c.model.experts, topo, placement_load_profile(c, s, topo));
}

}  // namespace moe
