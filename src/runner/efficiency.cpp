// Runtime efficiency from the cost model (see efficiency.hpp); the formulas live in cost/roofline.*.
#include "runner/efficiency.hpp"

#include <memory>

#include "core/error.hpp"
#include "cost/cost_model.hpp"
#include "cost/roofline.hpp"

namespace moe {

nlohmann::ordered_json efficiency_json(const Config& config, const StrategyConfig& spec, const Topology& topo, int world_size,
                                       int elem_bytes, const Placement& placement, double prefill_s, double decode_step_s,
                                       double measured_flops_per_iteration) {
  MOE_REQUIRE(world_size == topo.num_ranks() && world_size == config.cluster.nodes * config.cluster.gpus_per_node,
              "efficiency: the world size must equal the topology's ranks (cluster.nodes x gpus_per_node)");
  MOE_REQUIRE(prefill_s >= 0 && decode_step_s >= 0, "efficiency: measured times must not be negative");
  CostOptions options;
  options.elem_bytes = elem_bytes;
  if (spec.kind == "ep") options.placement = std::make_shared<const Placement>(placement);
  const CostModel model(config, spec, options);
  const IterationCounts counts = iteration_counts(model, config);

  nlohmann::ordered_json j;
  j["source"] = "counts: cost model (src/cost; ep link bytes for an expected uniform routing, the measured ones are in "
                "traffic); times: measured prefill and mean decode step; peaks: the config's cluster";
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
