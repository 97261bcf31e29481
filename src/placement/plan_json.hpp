// Plan files: a Placement as JSON and back, with errors naming the JSON path. Schema:
// {"schema_version": 1, "algorithm", "num_ranks", "expert_tp" (optional, default 1),
//  "load_profile" (optional: the routing planned for),
//  "layers": [{"replicas": [[ranks of expert 0], ...], "slots": [[experts of rank 0], ...]}, ...]}
// With expert_tp > 1 the plan places whole experts on expert-TP groups: num_ranks counts the groups
// and "ranks" in replicas and slots are group indices (strategy_plan.hpp).
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "placement/placement.hpp"

namespace moe {

nlohmann::ordered_json placement_to_json(const Placement& p, int num_ranks, const std::string& load_profile = "",
                                         int expert_tp = 1);

// Checks types, ranges and that replicas and slots describe the same placement with the placement
// invariants (check_placement). Throws ConfigError(json path, reason naming `source`).
Placement placement_from_json(const nlohmann::json& j, const std::string& source);

// Throws ConfigError when the plan does not fit a run of `num_layers` x `num_experts` on `num_ranks`
// placement units (`units` names them: ranks, or expert-TP groups).
void check_plan_shape(const Placement& p, int num_layers, int num_experts, int num_ranks, const std::string& source,
                      const std::string& units = "ranks");

void write_plan_file(const std::string& path, const Placement& p, int num_ranks, const std::string& load_profile = "");
Placement read_plan_file(const std::string& path);

}  // namespace moe
