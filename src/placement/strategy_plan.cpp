// Placement of an ep strategy from its config (used by the runtime and the cost model alike).
#include "placement/strategy_plan.hpp"

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

Placement plan_for_strategy(const Config& c, const StrategyConfig& s, const Topology& topo) {
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
