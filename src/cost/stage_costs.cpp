// The costed schedule of a step (see cost_model.hpp): which ops every stage of the step's schedule
// runs, and the step's op list. The only place that maps a kind of stage to the ops of its step.
#include "cost/cost_model.hpp"

#include <initializer_list>
#include <string>

#include "core/error.hpp"

namespace moe {

using Slot = OpRef::Slot;

namespace {

OpUse use(Slot slot, int layer, int part, OpPart what = OpPart::all, double share = 1) {
  return OpUse{OpRef{slot, layer, part}, what, share};
}

// The stage's cost from its uses; its phase is its first op's.
StageCost stage_cost(const StepCost& s, const Stage& st, std::initializer_list<OpUse> uses) {
  StageCost c;
  c.communication = is_communication(st.kind);
  MOE_REQUIRE(uses.size() >= 1 && uses.size() <= c.uses.size(), "cost model: a stage runs one or two ops");
  for (const OpUse& u : uses) c.uses[c.count++] = u;
  c.phase = s.op(c.uses[0].op).phase;
  return c;
}

// ep: attention and gate run per part (a share of the layer's op by rows) or per layer; pack and
// dispatch are the part's dispatch op (kernels, then the all-to-all), combine and unpack the part's
// combine op (the all-to-all back, then the weighted sum), with the residual's share.
StageCost ep_stage(const StepCost& s, const Stage& st, int64_t total_rows) {
  const int l = st.layer, p = st.part;
  const double share = p < 0 || total_rows == 0 ? 1.0 : double(s.schedule.parts.at(p).rows) / double(total_rows);
  switch (st.kind) {
    case StageKind::attention: return stage_cost(s, st, {use(Slot::ep_attention, l, -1, OpPart::all, share)});
    case StageKind::gate: return stage_cost(s, st, {use(Slot::ep_gate, l, -1, OpPart::all, share)});
    case StageKind::counts: return stage_cost(s, st, {use(Slot::ep_counts, l, -1, OpPart::comm)});
    case StageKind::pack: return stage_cost(s, st, {use(Slot::ep_dispatch, l, p, OpPart::kernels)});
    case StageKind::dispatch: return stage_cost(s, st, {use(Slot::ep_dispatch, l, p, OpPart::comm)});
    case StageKind::experts: return stage_cost(s, st, {use(Slot::ep_expert, l, p, OpPart::kernels)});
    case StageKind::combine: return stage_cost(s, st, {use(Slot::ep_combine, l, p, OpPart::comm)});
    case StageKind::unpack:
      return stage_cost(s, st, {use(Slot::ep_combine, l, p, OpPart::kernels), use(Slot::ep_residual, l, -1, OpPart::all, share)});
    default: break;
  }
  throw Error(std::string("cost model: unexpected ep stage ") + stage_name(st.kind));
}

void attach_ep(StepCost& s) {
  int64_t total_rows = 0;
  for (const PartRows& p : s.schedule.parts) total_rows += p.rows;
  s.stage_costs.reserve(s.schedule.stages.size());
  for (const Stage& st : s.schedule.stages) s.stage_costs.push_back(ep_stage(s, st, total_rows));
  for (int l = 0; l < static_cast<int>(s.ep_layers.size()); ++l) {
    for (Slot slot : {Slot::ep_attention, Slot::ep_gate, Slot::ep_residual, Slot::ep_counts}) s.ops.push_back({{slot, l, -1}, 1});
    const int parts = s.ep_layers[l].chunks ? static_cast<int>(s.ep_layers[l].chunks->size()) : 0;
    for (int p = 0; p < parts; ++p)
      for (Slot slot : {Slot::ep_dispatch, Slot::ep_expert, Slot::ep_combine}) s.ops.push_back({{slot, l, p}, 1});
  }
  s.outside_ops.push_back({{Slot::ep_tail, -1, -1}, 1});
}

// tp_pp: a stage's all-reduce follows its attention or its MoE (the stage it waits for) and adds the
// residual; moe_local is the gate and the expert shards; a pipeline transfer is one hop.
StageCost tp_pp_stage(const StepCost& s, const Stage& st) {
  const int l = st.layer;
  switch (st.kind) {
    case StageKind::attention: return stage_cost(s, st, {use(Slot::tp_attention, l, -1)});
    case StageKind::moe_local: return stage_cost(s, st, {use(Slot::tp_gate, l, -1), use(Slot::tp_expert, l, -1)});
    case StageKind::tp_allreduce: {
      MOE_REQUIRE(!st.after.empty(), "cost model: an all-reduce stage without the stage it reduces");
      if (s.schedule.stages.at(st.after.front()).kind == StageKind::attention)
        return stage_cost(s, st, {use(Slot::tp_attention_allreduce, l, -1), use(Slot::tp_attention_residual, l, -1)});
      return stage_cost(s, st, {use(Slot::tp_moe_allreduce, l, -1), use(Slot::tp_moe_residual, l, -1)});
    }
    case StageKind::pp_send:
    case StageKind::pp_recv: return stage_cost(s, st, {use(Slot::tp_pp_hop, -1, -1, OpPart::comm)});
    default: break;
  }
  throw Error(std::string("cost model: unexpected tp_pp stage ") + stage_name(st.kind));
}

// An occurrence of a per-micro-batch op is every pipeline stage doing it once (its all-ranks totals
// cover every stage): the step runs it once per micro-batch.
void attach_tp_pp(StepCost& s) {
  s.stage_costs.reserve(s.schedule.stages.size());
  for (const Stage& st : s.schedule.stages) s.stage_costs.push_back(tp_pp_stage(s, st));
  const double M = s.microbatches;
  for (int l = 0; l < static_cast<int>(s.stage_layers.size()); ++l)
    for (Slot slot : {Slot::tp_attention, Slot::tp_attention_allreduce, Slot::tp_attention_residual, Slot::tp_gate,
                      Slot::tp_expert, Slot::tp_moe_allreduce, Slot::tp_moe_residual})
      s.ops.push_back({{slot, l, -1}, M});
  if (s.stages > 1) s.ops.push_back({{Slot::tp_pp_hop, -1, -1}, M});
  s.outside_ops = {{{Slot::tp_stage_input, -1, -1}, M}, {{Slot::tp_stage_output, -1, -1}, M},
                   {{Slot::tp_feedback, -1, -1}, 1}, {{Slot::tp_feedback_send, -1, -1}, 1}};
}

}  // namespace

void attach_stage_costs(StepCost& s) {
  s.stage_costs.clear();
  s.ops.clear();
  s.outside_ops.clear();
  switch (s.kind) {
    case StrategyKind::ep: attach_ep(s); break;
    case StrategyKind::tp_pp: attach_tp_pp(s); break;
  }
}

}  // namespace moe
