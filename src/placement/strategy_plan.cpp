// Placement of an ep strategy from its config (used by the runtime and the cost model alike).
#include "placement/strategy_plan.hpp"

#include "placement/load_profile.hpp"
#include "placement/placers.hpp"

namespace moe {

Placement plan_for_strategy(const Config& c, const StrategyConfig& s, const Topology& topo) {
  std::unique_ptr<Placer> placer;
  if (s.placement == "topology_aware") {
    TopologyAwareOptions o;
    o.nics_per_node = c.cluster.inter_node.nics_per_node;
    placer = make_topology_aware_placer(o);
  } else {
    placer = make_placer(s.placement);
  }
  LoadProfile profile;
  if (!s.placement_profile.empty()) {
    // One iteration's tokens (prefill + decode) per source rank.
    const double tokens_per_rank = double(c.workload.batch_sequences) / topo.num_ranks() *
                                   (c.workload.prompt_tokens + c.workload.decode_steps);
    profile = profile_from_distribution(parse_routing_distribution(s.placement_profile, "placement_profile"),
                                        c.model.layers, c.model.experts, c.model.top_k, topo, tokens_per_rank, c.model.seed);
  }
  return placer->place(c.model.layers, c.model.experts, topo, profile);
}

}  // namespace moe
