// The placement an ep strategy runs with: its algorithm (topology_aware tuned to the config's NICs)
// applied to the expected routing named by `placement_profile` (else workload.routing when that is a
// distribution, else uniform). With expert_tp > 1 the algorithm places experts on expert-TP groups,
// and the placement the ranks run with holds expert shards (shard_placement).
#pragma once
#include <memory>
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
// [m, m + 1) * ffn_hidden / expert_tp) is "expert" e * expert_tp + m of the result
// (shard_placement of the unit plan).
Placement plan_for_strategy(const Config& c, const StrategyConfig& s, const Topology& topo);

// The units an ep strategy places whole experts on: its ranks (expert_tp = 1), else its expert-TP
// groups (group g = ranks [g * expert_tp, (g + 1) * expert_tp), on one node): nodes x
// gpus_per_node / expert_tp. A plan file (`place`, `run --plan`) holds a placement over these units.
Topology placement_unit_topology(const Config& c, const StrategyConfig& s);
Topology expert_group_topology(const ClusterConfig& cluster, int expert_tp);
// The strategy's placement over its units: its algorithm (topology_aware tuned to the config's NICs)
// on the expected routing of `topo`'s ranks summed per unit (group_load_profile).
Placement unit_plan_for_strategy(const Config& c, const StrategyConfig& s, const Topology& topo);
// The placer of `algorithm` for this config's cluster.
std::unique_ptr<Placer> strategy_placer(const Config& c, const std::string& algorithm);

// Expert e on group g becomes shard e * expert_tp + m on rank g * expert_tp + m, in every layer: each
// shard's replicas are the member-m ranks of the expert's groups (ascending, as the groups).
Placement shard_placement(const Placement& groups, int expert_tp);
// Tokens per (source rank, expert) summed over each expert-TP group's ranks: [L][ranks/expert_tp][E].
LoadProfile group_load_profile(const LoadProfile& ranks, int expert_tp);
// Tokens per (source rank, shard): every shard of expert e receives expert e's tokens: [L][ranks][E*expert_tp].
LoadProfile shard_load_profile(const LoadProfile& ranks, int expert_tp);

}  // namespace moe
