// The placement an ep strategy runs with: its algorithm (topology_aware tuned to the config's NICs)
// applied to the expected routing named by `placement_profile` (else workload.routing when that is a
// distribution, else uniform). With expert_tp > 1 the algorithm places experts on expert-TP groups,
// and the placement the ranks run with holds expert shards (shard_placement).
#pragma once
#include <string>

#include "core/config.hpp"
#include "placement/placement.hpp"

namespace moe {

// The routing distribution the placement plans for ("" = uniform).
std::string placement_profile_spec(const Config& c, const StrategyConfig& s);
// Its expected tokens per source rank and expert over one iteration (prefill + decode); empty = uniform.
LoadProfile placement_load_profile(const Config& c, const StrategyConfig& s, const Topology& topo);
// The same for a distribution spec (e.g. a plan file's load_profile); `path` names it in errors.
LoadProfile distribution_load_profile(const Config& c, const std::string& spec, const Topology& topo,
                                      const std::string& path);

// The placement over world ranks: with expert_tp > 1, expert e's shard m (W1 columns and W2 rows
// [m, m + 1) * ffn_hidden / expert_tp) is "expert" e * expert_tp + m of the result.
Placement plan_for_strategy(const Config& c, const StrategyConfig& s, const Topology& topo);

// ep x expert_tp: what the placer sees, one rank per expert-TP group (group g = ranks
// [g * expert_tp, (g + 1) * expert_tp), on one node): nodes x gpus_per_node / expert_tp.
Topology expert_group_topology(const ClusterConfig& cluster, int expert_tp);
// Expert e on group g becomes shard e * expert_tp + m on rank g * expert_tp + m, in every layer: each
// shard's replicas are the member-m ranks of the expert's groups (ascending, as the groups).
Placement shard_placement(const Placement& groups, int expert_tp);

}  // namespace moe
