// Cost of a tp_pp step (see cost_model.hpp): the per-micro-batch work of one pipeline stage (every
// stage does the same work on its own layers), its all-reduces and the stage-to-stage transfers,
// following tp_pp.cpp and blocks.cpp call by call.
#include "cost/cost_kernels.hpp"
#include "cost/ep_routing.hpp"

#include "core/error.hpp"

namespace moe {

using namespace cost_kernels;

namespace {

// Ring all-reduce as MpiComm counts it: 2*bytes*(n-1)/n (integer) to the ring neighbour, every rank
// of every stage's tp group. One shape serves both all-reduces of every layer.
CommCost tp_allreduce_cost(const Topology& topo, int nics, int tp, int pp, int64_t buffer_bytes) {
  auto allreduce = std::make_shared<LinkLoads>(topo, nics);
  const int64_t counted = 2 * buffer_bytes * (tp - 1) / tp;
  bool crosses = false;
  for (int st = 0; st < pp; ++st)
    for (int i = 0; i < tp; ++i) {
      const int src = st * tp + i, dst = st * tp + (i + 1) % tp;
      allreduce->add(topo, nics, src, dst, double(counted));
      for (int j = 0; j < tp; ++j) crosses = crosses || topo.link(src, st * tp + j) == LinkClass::inter_node;
    }
  return CommCost{tp > 1 ? CommKind::all_reduce : CommKind::none, allreduce, 1, double(buffer_bytes), tp, 1, crosses, 1};
}

// Point-to-point sends of `bytes` from rank src(i) to dst(i) for every i < count.
template <class Src, class Dst>
CommCost p2p_cost(const Topology& topo, int nics, int count, double bytes, Src src, Dst dst) {
  auto links = std::make_shared<LinkLoads>(topo, nics);
  bool crosses = false;
  for (int i = 0; i < count; ++i) {
    links->add(topo, nics, src(i), dst(i), bytes);
    crosses = crosses || topo.link(src(i), dst(i)) == LinkClass::inter_node;
  }
  return CommCost{CommKind::p2p, links, 1, bytes, 2, 1, crosses, 1};
}

}  // namespace

StepCost CostModel::step_tp_pp(int new_len, int past_len) const {
  const ModelConfig& m = config_.model;
  const int eb = options_.elem_bytes;
  const int tp = spec_.tp, pp = spec_.pp, M = spec_.microbatches;
  const int64_t d = m.hidden;
  const int64_t batch = config_.workload.batch_sequences;
  const int64_t rows = batch / M * new_len;
  StepCost s;
  s.kind = StrategyKind::tp_pp;
  s.schedule = tp_pp_stage_schedule(config_, spec_, 0);
  s.ranks = tp * pp;
  s.new_len = new_len;
  s.past_len = past_len;
  s.stages = pp;
  s.microbatches = M;
  s.tp = tp;
  const CommCost ar = tp_allreduce_cost(topo_, nics_, tp, pp, rows * d * eb);
  for (int i = 0; i < m.layers / pp; ++i) s.stage_layers.push_back(tp_pp_layer(s, i, ar));
  // Stage 0 copies its micro-batch in; the last stage copies it out (both outside any phase).
  s.stage_input.kernels = {elementwise(KernelKind::copy, double(rows) * d, double(rows) * d, eb)};
  replicate(s.stage_input, tp);
  s.stage_output = s.stage_input;
  if (pp > 1) {
    // pp_comm send of x [rows x d] from (stage, tp rank) to (stage + 1, tp rank), every boundary.
    s.pp_hop.phase = Phase::pp_transfer;
    s.pp_hop.comm = p2p_cost(topo_, nics_, (pp - 1) * tp, double(rows * d * eb), [&](int i) { return i; },
                             [&](int i) { return i + tp; });
    // feed_back: rms(y_last) of every sequence, last stage -> stage 0.
    s.feedback_send.phase = Phase::pp_transfer;
    s.feedback_send.comm = p2p_cost(topo_, nics_, tp, double(batch * d * eb), [&](int i) { return (pp - 1) * tp + i; },
                                    [&](int i) { return i; });
  }
  s.feedback.kernels = {transfer(KernelKind::upload, double(batch) * 4),
                        elementwise(KernelKind::gather, double(batch) * d, double(batch) * d, eb),
                        elementwise(KernelKind::rms_norm, double(batch) * d, double(batch) * d, eb)};
  replicate(s.feedback, tp);
  attach_stage_costs(s);
  return s;
}

TpPpLayerCost CostModel::tp_pp_layer(const StepCost& s, int layer, const CommCost& allreduce) const {
  const ModelConfig& m = config_.model;
  const int eb = options_.elem_bytes;
  const int tp = s.tp, pp = s.stages;
  const int64_t d = m.hidden, k = m.top_k, E = m.experts;
  const int64_t mb_seqs = config_.workload.batch_sequences / s.microbatches;
  const int64_t rows = mb_seqs * s.new_len;
  const double stage_ranks = double(tp) * pp;
  auto residual = [&] {
    Op op;
    op.kernels = {elementwise(KernelKind::add, 2.0 * rows * d, double(rows) * d, eb)};
    replicate(op, stage_ranks);
    return op;
  };
  TpPpLayerCost L;
  if (m.attention) {
    L.attention.phase = Phase::attention;
    attention_kernels(L.attention, m, mb_seqs, m.heads / tp, s.new_len, s.past_len, eb);
    replicate(L.attention, stage_ranks);
    L.attention_allreduce.phase = Phase::tp_allreduce;
    L.attention_allreduce.comm = allreduce;
    L.attention_residual = residual();
  }
  // Gate and make_local_plan on every tp rank (the gate is replicated), three index uploads.
  L.gate.phase = Phase::gate;
  Kernel up = transfer(KernelKind::upload, 3.0 * rows * k * 4);
  up.launches = 3;
  L.gate.kernels = {elementwise(KernelKind::rms_norm, double(rows) * d, double(rows) * d, eb),
                    gemm_kernel(double(rows), d, E, eb), transfer(KernelKind::download, double(rows) * E * eb, true),
                    host(KernelKind::host_route, double(rows) * E), host(KernelKind::host_plan, double(rows) * k), up};
  replicate(L.gate, stage_ranks);
  L.expert = tp_pp_experts(s, layer);
  L.moe_allreduce.phase = Phase::tp_allreduce;
  L.moe_allreduce.comm = allreduce;
  L.moe_residual = residual();
  return L;
}

// Gather of the assignments, every expert's column shard, weighted combine: the busiest stage's
// expert shares set the kernels (stage st runs layer st * layers_per_stage + layer), every stage's own
// routing the all-ranks totals.
Op CostModel::tp_pp_experts(const StepCost& s, int layer) const {
  const ModelConfig& m = config_.model;
  const int eb = options_.elem_bytes;
  const int tp = s.tp, pp = s.stages, E = m.experts;
  const int64_t d = m.hidden, cols = m.ffn_hidden / tp;
  const int64_t rows = int64_t(config_.workload.batch_sequences) / s.microbatches * s.new_len;
  const int64_t step_tokens = int64_t(config_.workload.batch_sequences) * s.new_len;
  const int layers_per_stage = m.layers / pp;
  auto shares_of_stage = [&](int st) {
    return assignments_per_token(config_, spec_, options_.routing, st * layers_per_stage + layer, step_tokens);
  };
  std::vector<double> a(E, 0.0);
  for (int st = 0; st < pp; ++st) {
    const auto al = shares_of_stage(st);
    for (int e = 0; e < E; ++e) a[e] = std::max(a[e], al[e]);  // the slowest stage decides the schedule
  }
  double assignments = 0;
  for (double x : a) assignments += x * rows;
  Op op;
  op.phase = Phase::expert;
  op.kernels = {elementwise(KernelKind::gather, assignments * d, assignments * d, eb)};
  for (int e = 0; e < E; ++e) expert_kernels(op.kernels, a[e] * rows, d, cols, double(rows), eb);
  op.kernels.push_back(elementwise(KernelKind::combine, assignments * d, double(rows) * d, eb));
  merge_same_kind(op.kernels);
  for (int st = 0; st < pp; ++st) {  // exact per stage (its own layer's routing)
    const auto al = shares_of_stage(st);
    std::vector<Kernel> ks;
    double as = 0;
    for (int e = 0; e < E; ++e) {
      expert_kernels(ks, al[e] * rows, d, cols, double(rows), eb);
      as += al[e] * rows;
    }
    ks.push_back(elementwise(KernelKind::gather, as * d, as * d, eb));
    ks.push_back(elementwise(KernelKind::combine, as * d, double(rows) * d, eb));
    for (const Kernel& kk : ks) {
      op.flops_all_ranks += kk.flops * tp;
      op.hbm_bytes_all_ranks += kk.bytes * tp;
    }
  }
  return op;
}

}  // namespace moe
