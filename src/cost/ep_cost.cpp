// Cost of an ep step (see cost_model.hpp): per layer attention, gate, the count exchange, and per part
// of the step's schedule dispatch, experts and combine, following ep.cpp and blocks.cpp call by call;
// a comment names the runtime call a kernel or message stands for. With expert_tp > 1 the flows are
// the shards' (ep_routing.cpp) and each shard computes ffn_hidden / expert_tp columns.
#include "cost/cost_kernels.hpp"
#include "cost/ep_routing.hpp"

#include "core/error.hpp"

namespace moe {

using namespace cost_kernels;

StepCost CostModel::step_ep(int new_len, int past_len) const {
  const ModelConfig& m = config_.model;
  const int G = topo_.num_ranks();
  const int64_t local_seqs = config_.workload.batch_sequences / G;
  StepCost s;
  s.kind = StrategyKind::ep;
  s.ranks = G;
  s.new_len = new_len;
  s.past_len = past_len;
  s.schedule = ep_step_schedule(config_, spec_, new_len);
  const int step_idx = past_len == 0 ? 0 : past_len - prompt_tokens_ + 1;  // prefill 0, decode step t: t + 1
  for (int l = 0; l < m.layers; ++l) s.ep_layers.push_back(ep_layer(s, l, step_idx, local_seqs));
  // Next decode input: upload of last-row indices, gather, rms (EpStrategy::run_step).
  const int eb = options_.elem_bytes;
  const double seq_elems = double(local_seqs) * m.hidden;
  s.ep_tail.kernels = {transfer(KernelKind::upload, double(local_seqs) * 4),
                       elementwise(KernelKind::gather, seq_elems, seq_elems, eb),
                       elementwise(KernelKind::rms_norm, seq_elems, seq_elems, eb)};
  replicate(s.ep_tail, G);
  attach_stage_costs(s);
  return s;
}

EpLayerCost CostModel::ep_layer(const StepCost& s, int l, int step_idx, int64_t local_seqs) const {
  const ModelConfig& m = config_.model;
  const int eb = options_.elem_bytes;
  const int G = s.ranks;
  const int64_t d = m.hidden;
  const int64_t rows = local_seqs * s.new_len;
  const int64_t step_tokens = int64_t(config_.workload.batch_sequences) * s.new_len;
  const auto route = ep_routing(l, step_idx, rows, step_tokens);
  EpLayerCost L;
  if (m.attention) {
    L.attention.phase = Phase::attention;
    attention_kernels(L.attention, m, local_seqs, m.heads, s.new_len, s.past_len, eb);
    L.attention.kernels.push_back(elementwise(KernelKind::add, 2.0 * rows * d, double(rows) * d, eb));  // h = x + Attn
    replicate(L.attention, G);
  }
  // Gate::route: rms, logits GEMM, download + host softmax/top-k.
  L.gate.phase = Phase::gate;
  L.gate.kernels = {elementwise(KernelKind::rms_norm, double(rows) * d, double(rows) * d, eb),
                    gemm_kernel(double(rows), d, m.experts, eb),
                    transfer(KernelKind::download, double(rows) * m.experts * eb, true),
                    host(KernelKind::host_route, double(rows) * m.experts)};
  replicate(L.gate, G);
  // The layer's count exchange: every part's rows per (rank, slot) and the chosen and dropped
  // counts per expert to every peer; with a capacity, the chosen counts first in a round of their own.
  const double per_peer = double(s.schedule.parts.size()) * route->max_slots + 2.0 * m.experts;
  L.counts.phase = Phase::dispatch;
  L.counts.comm = CommCost{CommKind::control, nullptr, 1, 8.0 * per_peer * G, G, G - 1, topo_.nodes() > 1,
                           spec_.load_balancing.capacity_factor > 0 ? 2 : 1};
  CachedParts& cached = parts_[std::make_tuple(l, route.get(), s.new_len)];
  if (!cached.parts) cached = CachedParts{route, ep_parts(*route, s.schedule, local_seqs)};
  L.chunks = cached.parts;
  L.residual.kernels = {elementwise(KernelKind::add, 2.0 * rows * d, double(rows) * d, eb)};
  replicate(L.residual, G);
  return L;
}

std::shared_ptr<const std::vector<EpChunkCost>> CostModel::ep_parts(const EpRouting& route, const Schedule& schedule,
                                                                  int64_t local_seqs) const {
  auto parts = std::make_shared<std::vector<EpChunkCost>>();
  for (const PartRows& part : schedule.parts) {
    const double n = double(part.rows);
    EpChunkCost ch;
    ch.dispatch = ep_dispatch(route, n);
    ch.expert = ep_experts(route, n, local_seqs);
    ch.combine = ep_combine(route, n);
    parts->push_back(std::move(ch));
  }
  return parts;
}

// make_dispatch_plan, upload, gather, all_to_all_v of a part of n rows per rank.
Op CostModel::ep_dispatch(const EpRouting& route, double n) const {
  const int eb = options_.elem_bytes, G = topo_.num_ranks();
  const int64_t d = config_.model.hidden;
  const double kt = double(config_.model.top_k) * spec_.expert_tp;   // dispatched rows per token
  const double sent = n * route.sent_rows;
  const double recv = n * route.recv_rows[route.busiest];
  Op op;
  op.phase = Phase::dispatch;
  op.kernels = {host(KernelKind::host_plan, n * kt + recv), transfer(KernelKind::upload, sent * 4),
                elementwise(KernelKind::gather, sent * d, sent * d, eb)};
  op.comm = CommCost{CommKind::all_to_all, route.dispatch, n * d * eb, n * route.sent_rows * d * eb, G,
                     route.peers, route.crosses_nodes, 1};
  replicate(op, G);
  if (route.per_source) {  // the all-ranks gather moves each rank's own rows
    op.hbm_bytes_all_ranks = 0;
    for (int r = 0; r < G; ++r) op.hbm_bytes_all_ranks += 2 * n * route.sent_rows_of[r] * d * eb;
  }
  return op;
}

// The bank on each source's rows as they arrive (grouped by slot; no regrouping): every shard is
// ffn_hidden / expert_tp columns wide.
Op CostModel::ep_experts(const EpRouting& route, double n, int64_t local_seqs) const {
  const ModelConfig& m = config_.model;
  const int eb = options_.elem_bytes, G = topo_.num_ranks();
  const int64_t d = m.hidden, cols = m.ffn_hidden / spec_.expert_tp;
  const double expert_block = double(local_seqs) * prompt_tokens_ * m.top_k * spec_.expert_tp;  // ExpertBank scratch rows
  // Ranks do different expert work unless the routing is uniform: then list every rank's kernels.
  const bool uneven = options_.routing.has_sources() || !options_.routing.expert_share.empty();
  Op op;
  op.phase = Phase::expert;
  for (int sl = 0; sl < route.max_slots; ++sl)
    expert_kernels(op.kernels, n * route.slot_rows[size_t(route.busiest) * route.max_slots + sl], d, cols, expert_block, eb);
  merge_same_kind(op.kernels);
  for (int r = 0; r < G; ++r) {
    std::vector<Kernel> ks;
    for (int sl = 0; sl < route.max_slots; ++sl)
      expert_kernels(ks, n * route.slot_rows[size_t(r) * route.max_slots + sl], d, cols, expert_block, eb);
    for (const Kernel& kk : ks) {
      op.flops_all_ranks += kk.flops;
      op.hbm_bytes_all_ranks += kk.bytes;
    }
    if (uneven) {
      merge_same_kind(ks);
      op.kernels_all_ranks.insert(op.kernels_all_ranks.end(), ks.begin(), ks.end());
    }
  }
  return op;
}

// all_to_all_v back, two uploads (slots and weights of every returned row), weighted combine into the
// part's rows: with expert_tp > 1 the weighted sum adds the shards' partial outputs at the source.
Op CostModel::ep_combine(const EpRouting& route, double n) const {
  const int eb = options_.elem_bytes, G = topo_.num_ranks();
  const int64_t d = config_.model.hidden;
  const double kt = double(config_.model.top_k) * spec_.expert_tp;
  const double sent = n * route.sent_rows;
  Op op;
  op.phase = Phase::combine;
  Kernel up = transfer(KernelKind::upload, 2 * n * kt * 4);
  up.launches = 2;
  op.kernels = {up, elementwise(KernelKind::combine, sent * d, n * d, eb)};
  op.comm = CommCost{CommKind::all_to_all, route.combine, n * d * eb, n * route.sent_rows * d * eb, G,
                     route.peers, route.crosses_nodes, 1};
  replicate(op, G);
  if (route.per_source) {  // each rank combines its own returned rows
    op.hbm_bytes_all_ranks = 0;
    for (int r = 0; r < G; ++r) op.hbm_bytes_all_ranks += (n * route.sent_rows_of[r] + n) * d * eb;
  }
  return op;
}

}  // namespace moe
