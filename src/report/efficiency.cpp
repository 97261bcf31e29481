// Runtime efficiency from the cost model (see efficiency.hpp); the formulas live in cost/roofline.*.
#include "report/efficiency.hpp"

#include <memory>

#include "core/error.hpp"
#include "cost/cost_model.hpp"
#include "cost/roofline.hpp"

namespace moe {

SourceCounts kept_assignments(const SourceCounts& chosen, const SourceCounts& dropped) {
  if (chosen.empty()) return {};
  MOE_REQUIRE(dropped.size() == chosen.size(), "kept assignments: chosen and dropped must have the same layers");
  SourceCounts kept = chosen;
  for (size_t l = 0; l < kept.size(); ++l) {
    MOE_REQUIRE(dropped[l].size() == kept[l].size(), "kept assignments: chosen and dropped must have the same ranks");
    for (size_t g = 0; g < kept[l].size(); ++g) {
      MOE_REQUIRE(dropped[l][g].size() == kept[l][g].size(), "kept assignments: chosen and dropped must have the same experts");
      for (size_t e = 0; e < kept[l][g].size(); ++e) kept[l][g][e] -= dropped[l][g][e];
    }
  }
  return kept;
}

nlohmann::ordered_json efficiency_json(const Config& config, const StrategyConfig& spec, const Topology& topo, int world_size,
                                       int elem_bytes, const Placement& placement, double prefill_s, double decode_step_s,
                                       double measured_flops_per_iteration, const SourceCounts& kept_by_source) {
  MOE_REQUIRE(world_size == topo.num_ranks() && world_size == config.cluster.nodes * config.cluster.gpus_per_node,
              "efficiency: the world size must equal the topology's ranks (cluster.nodes x gpus_per_node)");
  MOE_REQUIRE(prefill_s >= 0 && decode_step_s >= 0, "efficiency: measured times must not be negative");
  CostOptions options;
  options.elem_bytes = elem_bytes;
  const bool ep = kind_of(spec) == StrategyKind::ep;
  const bool counted = ep && !kept_by_source.empty();
  // The placement over ranks the strategy ran with (expert shards with expert_tp > 1); empty: the
  // cost model plans as the strategy does.
  if (ep && !placement.layers.empty()) options.placement = std::make_shared<const Placement>(placement);
  if (counted) {
    // Per local token of each source: the iteration's kept assignments over its local tokens (every
    // rank routes batch / ep sequences, prompt + decode_steps tokens each).
    const int L = config.model.layers, E = config.model.experts;
    MOE_REQUIRE(static_cast<int>(kept_by_source.size()) == L, "efficiency: kept assignments must be [layers][ranks][experts]");
    const double local_tokens = double(config.workload.batch_sequences) / world_size *
                                (config.workload.prompt_tokens + config.workload.decode_steps);
    auto per_token = std::make_shared<SourceAssignments>(L, std::vector<std::vector<double>>(world_size, std::vector<double>(E, 0)));
    for (int l = 0; l < L; ++l) {
      MOE_REQUIRE(static_cast<int>(kept_by_source[l].size()) == world_size, "efficiency: kept assignments need one row per rank");
      for (int g = 0; g < world_size; ++g) {
        MOE_REQUIRE(static_cast<int>(kept_by_source[l][g].size()) == E, "efficiency: kept assignments need one count per expert");
        for (int e = 0; e < E; ++e) (*per_token)[l][g][e] = local_tokens > 0 ? double(kept_by_source[l][g][e]) / local_tokens : 0;
      }
    }
    options.routing.source_assignments = per_token;
  }
  const CostModel model(config, spec, options);
  const IterationCounts counts = iteration_counts(model, config);

  nlohmann::ordered_json j;
  j["source"] = std::string("counts: cost model (src/cost; ") +
                (!ep ? "tp_pp link bytes do not depend on the routing"
                 : counted ? "ep with the run's counted routing: kept assignments per source rank and expert over the "
                             "checked iteration, the same mix per local token in every step, through the runtime's replica deal"
                           : "ep link bytes for an expected uniform routing, the measured ones are in traffic") +
                "); times: measured prefill and mean decode step; peaks: the config's cluster";
  j["flops_per_iteration"] = measured_flops_per_iteration;  // the backend's counter (compute.flops())
  j["cost_model_flops_per_iteration"] = counts.flops_per_iteration;
  j["flops_counter_vs_cost_model"] = counts.flops_per_iteration > 0
                                         ? nlohmann::ordered_json(measured_flops_per_iteration / counts.flops_per_iteration)
                                         : nlohmann::ordered_json(nullptr);
  const nlohmann::ordered_json block = efficiency_block(counts, config.cluster, prefill_s, decode_step_s);
  for (const auto& [key, value] : block.items()) j[key] = value;
  return j;
}

}  // namespace moe
