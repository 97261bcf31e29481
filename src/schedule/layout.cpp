// Layout JSON of every strategy kind (see layout.hpp).
#include "schedule/layout.hpp"

#include "core/error.hpp"
#include "schedule/schedule.hpp"

namespace moe {
namespace {

using ojson = nlohmann::ordered_json;

ojson tp_pp_layout(const Config& c, const StrategyConfig& s) {
  const ModelConfig& m = c.model;
  return {{"tp", s.tp}, {"pp", s.pp}, {"microbatches", s.microbatches}, {"overlap", s.overlap},
          {"layers_per_stage", m.layers / s.pp}, {"heads_per_rank", m.attention ? m.heads / s.tp : 0},
          {"experts_per_rank", m.experts}, {"expert_shard_ffn_columns", m.ffn_hidden / s.tp},
          {"schedule", {{"stage", 0}, {"step", tp_pp_stage_schedule(c, s, 0).summary()}}}};
}

ojson ep_layout(const Config& c, const StrategyConfig& s, const Placement& placement) {
  MOE_REQUIRE(!placement.layers.empty(), "ep layout: the placement has no layers");
  const Schedule prefill = ep_step_schedule(c, s, c.workload.prompt_tokens);
  const Schedule decode = ep_step_schedule(c, s, 1);
  // Experts per rank by expert index (a shard e * expert_tp + m holds part of expert e).
  ojson experts_of_rank = ojson::array();
  for (const LayerPlacement& lp : placement.layers) {
    ojson layer = ojson::array();
    for (const auto& slots : lp.slots) {
      std::vector<int> experts;
      for (int shard : slots) experts.push_back(shard / s.expert_tp);
      layer.push_back(experts);
    }
    experts_of_rank.push_back(layer);
  }
  ojson j = {{"ep", s.ep}, {"expert_tp", s.expert_tp}, {"chunks", s.chunks}, {"overlap", s.overlap},
             {"prefill_parts", prefill.parts.size()}, {"decode_parts", decode.parts.size()},
             {"immediate_routing", prefill.front_per_part},
             {"sequences_per_rank", c.workload.batch_sequences / strategy_ranks(s)},
             {"placement", placement.algorithm}, {"max_experts_per_rank", placement.layers.at(0).max_slots()}};
  if (s.expert_tp > 1) j["expert_shard_ffn_columns"] = c.model.ffn_hidden / s.expert_tp;
  j["experts_of_rank"] = experts_of_rank;
  j["schedule"] = {{"prefill", prefill.summary()}, {"decode_step", decode.summary()}};
  return j;
}

}  // namespace

ojson strategy_layout(const Config& c, const StrategyConfig& s, const Placement* placement) {
  switch (kind_of(s)) {
    case StrategyKind::tp_pp: return tp_pp_layout(c, s);
    case StrategyKind::ep:
      MOE_REQUIRE(placement != nullptr, "ep layout: needs the placement the ranks run with");
      return ep_layout(c, s, *placement);
  }
  return {};
}

}  // namespace moe
