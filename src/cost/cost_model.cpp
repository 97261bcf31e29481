// The cost model (see cost_model.hpp): checks, the step cache, and the sums over a step or an
// iteration. The steps of each kind are built in <kind>_cost.cpp.
#include "cost/cost_model.hpp"
#include "cost/ep_routing.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "placement/placement.hpp"
#include "placement/strategy_plan.hpp"

namespace moe {

CostModel::CostModel(const Config& config, const StrategyConfig& spec, CostOptions options)
    : config_(config), spec_(spec), options_(std::move(options)), topo_(Topology::from_config(config.cluster)),
      nics_(std::max(1, config.cluster.inter_node.nics_per_node)), prompt_tokens_(config.workload.prompt_tokens) {
  MOE_REQUIRE(options_.elem_bytes > 0, "cost model: elem_bytes must be positive");
  switch (kind_of(spec_)) {
    case StrategyKind::tp_pp: check_tp_pp(); break;
    case StrategyKind::ep: check_ep(); break;
  }
}

void CostModel::check_tp_pp() const {
  MOE_REQUIRE(spec_.tp > 0 && spec_.pp > 0 && int64_t(spec_.tp) * spec_.pp == topo_.num_ranks(),
              "cost model: tp * pp must equal cluster.nodes * gpus_per_node");
  MOE_REQUIRE(config_.model.layers % spec_.pp == 0, "cost model: model.layers must divide by pp");
  MOE_REQUIRE(spec_.microbatches > 0 && config_.workload.batch_sequences % spec_.microbatches == 0,
              "cost model: batch_sequences must divide by microbatches");
}

void CostModel::check_ep() {
  const Config& config = config_;
  MOE_REQUIRE(strategy_ranks(spec_) == topo_.num_ranks(), "cost model: ep * expert_tp must equal cluster.nodes * gpus_per_node");
  MOE_REQUIRE(config.workload.batch_sequences % topo_.num_ranks() == 0,
              "cost model: batch_sequences must divide by ep * expert_tp");
  MOE_REQUIRE(config.model.ffn_hidden % spec_.expert_tp == 0, "cost model: ffn_hidden must divide by expert_tp");
  // The same plan EpStrategy runs with (one place decides it), unless the caller gives the plan.
  placement_ = options_.placement ? options_.placement : std::make_shared<Placement>(plan_for_strategy(config, spec_, topo_));
  MOE_REQUIRE(static_cast<int>(placement_->layers.size()) == config.model.layers,
              "cost model: the placement must have one entry per model layer");
  // One entry per expert, or per expert shard (expert_tp > 1).
  const int placed = config.model.experts * spec_.expert_tp;
  for (const LayerPlacement& lp : placement_->layers)
    MOE_REQUIRE(lp.num_experts == placed && static_cast<int>(lp.replicas.size()) == placed,
                "cost model: the placement must place model.experts x expert_tp experts (shards) per layer");
  check_placement(*placement_, topo_.num_ranks());
}

CostModel::~CostModel() = default;

StepCost CostModel::step(int new_len, int past_len) const {
  MOE_REQUIRE(new_len > 0 && past_len >= 0, "cost model: new_len must be positive");
  const auto key = std::make_pair(new_len, past_len);
  auto it = steps_.find(key);
  if (it == steps_.end()) {
    switch (kind_of(spec_)) {
      case StrategyKind::tp_pp: it = steps_.emplace(key, step_tp_pp(new_len, past_len)).first; break;
      case StrategyKind::ep: it = steps_.emplace(key, step_ep(new_len, past_len)).first; break;
    }
  }
  return it->second;
}

void CostTotals::add_op(const Op& op, double times) {
  auto& p = phases[static_cast<int>(op.phase)];
  p.flops += op.flops_all_ranks * times;
  p.hbm_bytes += op.hbm_bytes_all_ranks * times;
  if (op.comm.kind != CommKind::none && op.comm.kind != CommKind::control && op.comm.links)
    links.add_scaled(*op.comm.links, op.comm.scale * times);
}

// Every op of the step as often as the step runs it (each occurrence stands for all the ranks that
// run it): the ops of the costed stages, then those outside any stage.
CostTotals CostModel::totals(const StepCost& s) const {
  CostTotals t;
  t.links = LinkLoads(topo_, nics_);
  for (const std::vector<OpCount>* list : {&s.ops, &s.outside_ops})
    for (const OpCount& o : *list) t.add_op(s.op(o.op), o.times);
  return t;
}

CostTotals CostModel::iteration_totals() const {
  CostTotals t = totals(prefill());
  for (int i = 0; i < config_.workload.decode_steps; ++i) t.add(totals(decode(i)));
  return t;
}

}  // namespace moe
