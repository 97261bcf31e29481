// Cost of tp_pp and ep steps (see cost_model.hpp). Each builder below follows its strategy's code
// line by line; a comment names the runtime call a kernel or message stands for.
#include "cost/cost_model.hpp"
#include "cost/ep_routing.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "placement/placement.hpp"
#include "placement/strategy_plan.hpp"
#include "routing/router.hpp"

namespace moe {

namespace {

Kernel elementwise(KernelKind kind, double read_elems, double write_elems, int eb) {
  Kernel k;
  k.kind = kind;
  k.bytes = (read_elems + write_elems) * eb;
  return k;
}
Kernel transfer(KernelKind kind, double bytes, bool sync = false) {
  Kernel k;
  k.kind = kind;
  k.bytes = bytes;
  k.host_sync = sync;
  return k;
}
Kernel host(KernelKind kind, double items) {
  Kernel k;
  k.kind = kind;
  k.items = items;
  return k;
}

// Fill the all-ranks totals of an op run identically on `ranks` ranks.
void replicate(Op& op, double ranks) {
  op.flops_all_ranks = op.flops() * ranks;
  op.hbm_bytes_all_ranks = op.hbm_bytes() * ranks;
}

// Attention block (blocks.cpp AttentionBlock::forward) preceded by rms_norm: rows = seqs * new_len.
void attention_kernels(Op& op, const ModelConfig& m, int64_t seqs, int64_t heads, int new_len, int past_len, int eb) {
  const double rows = double(seqs) * new_len;
  const int64_t hd = heads * m.head_dim;
  op.kernels.push_back(elementwise(KernelKind::rms_norm, rows * m.hidden, rows * m.hidden, eb));
  Kernel qkv = gemm_kernel(rows, m.hidden, hd, eb);
  qkv.flops *= 3;
  qkv.bytes *= 3;
  qkv.launches = 3;
  op.kernels.push_back(qkv);
  op.kernels.push_back(attention_kernel(seqs, heads, m.head_dim, new_len, past_len, eb));
  op.kernels.push_back(gemm_kernel(rows, hd, m.hidden, eb));
}

// ExpertBank::run for one expert receiving `rows` (expected) rows with `cols` FFN columns: blocks of
// at most `block` rows, each W1 GEMM, silu, W2 GEMM. Weights are read once per block, and only if the
// expert receives any row: probability 1 - exp(-rows) (Poisson arrivals).
void expert_kernels(std::vector<Kernel>& out, double rows, int64_t d, int64_t cols, double block, int eb) {
  if (rows <= 0) return;
  const double active = 1.0 - std::exp(-rows);
  const double blocks = std::max(1.0, std::ceil(rows / std::max(1.0, block)));
  const double weight_reads = active * blocks * double(d) * cols * eb;
  Kernel w1 = gemm_kernel(rows, d, cols, eb), w2 = gemm_kernel(rows, cols, d, eb);
  w1.bytes = (rows * d + rows * cols) * eb + weight_reads;
  w2.bytes = (rows * cols + rows * d) * eb + weight_reads;
  w1.launches = w2.launches = active * blocks;
  w1.m = w2.m = rows / (active * blocks);  // rows of one launch
  Kernel act = elementwise(KernelKind::silu, rows * cols, rows * cols, eb);
  act.launches = active * blocks;
  out.push_back(w1);
  out.push_back(act);
  out.push_back(w2);
}

void merge_same_kind(std::vector<Kernel>& ks) {
  std::vector<Kernel> merged;
  for (const Kernel& k : ks) {
    // GEMMs merge only with the same shape (the time of a GEMM depends on it, not only on its FLOPs).
    auto it = std::find_if(merged.begin(), merged.end(), [&](const Kernel& x) {
      return x.kind == k.kind && x.host_sync == k.host_sync && x.k == k.k && x.n == k.n && std::abs(x.m - k.m) <= 1e-9 * (1 + x.m);
    });
    if (it == merged.end()) {
      merged.push_back(k);
    } else {
      it->flops += k.flops;
      it->bytes += k.bytes;
      it->items += k.items;
      it->launches += k.launches;
    }
  }
  ks = std::move(merged);
}

}  // namespace

// ---- model ----

CostModel::CostModel(const Config& config, const StrategyConfig& spec, CostOptions options)
    : config_(config), spec_(spec), options_(std::move(options)), topo_(Topology::from_config(config.cluster)),
      nics_(std::max(1, config.cluster.inter_node.nics_per_node)), prompt_tokens_(config.workload.prompt_tokens) {
  MOE_REQUIRE(options_.elem_bytes > 0, "cost model: elem_bytes must be positive");
  MOE_REQUIRE(spec_.kind == "tp_pp" || spec_.kind == "ep", "cost model: no cost model for strategy kind '" + spec_.kind + "'");
  if (spec_.kind == "tp_pp") {
    MOE_REQUIRE(spec_.tp > 0 && spec_.pp > 0 && int64_t(spec_.tp) * spec_.pp == topo_.num_ranks(),
                "cost model: tp * pp must equal cluster.nodes * gpus_per_node");
    MOE_REQUIRE(config.model.layers % spec_.pp == 0, "cost model: model.layers must divide by pp");
    MOE_REQUIRE(spec_.microbatches > 0 && config.workload.batch_sequences % spec_.microbatches == 0,
                "cost model: batch_sequences must divide by microbatches");
  } else {
    MOE_REQUIRE(spec_.ep == topo_.num_ranks(), "cost model: ep must equal cluster.nodes * gpus_per_node");
    MOE_REQUIRE(config.workload.batch_sequences % spec_.ep == 0, "cost model: batch_sequences must divide by ep");
    // The same plan EpStrategy runs with (one place decides it), unless the caller gives the plan.
    placement_ = options_.placement ? options_.placement : std::make_shared<Placement>(plan_for_strategy(config, spec_, topo_));
    MOE_REQUIRE(static_cast<int>(placement_->layers.size()) == config.model.layers,
                "cost model: the placement must have one entry per model layer");
    for (const LayerPlacement& lp : placement_->layers)
      MOE_REQUIRE(lp.num_experts == config.model.experts && static_cast<int>(lp.replicas.size()) == config.model.experts,
                  "cost model: the placement must place model.experts experts per layer");
    check_placement(*placement_, topo_.num_ranks());
  }
}

CostModel::~CostModel() = default;

StepCost CostModel::step(int new_len, int past_len) const {
  MOE_REQUIRE(new_len > 0 && past_len >= 0, "cost model: new_len must be positive");
  const auto key = std::make_pair(new_len, past_len);
  auto it = steps_.find(key);
  if (it == steps_.end())
    it = steps_.emplace(key, spec_.kind == "ep" ? step_ep(new_len, past_len) : step_tp_pp(new_len, past_len)).first;
  return it->second;
}

StepCost CostModel::step_ep(int new_len, int past_len) const {
  const ModelConfig& m = config_.model;
  const int eb = options_.elem_bytes;
  const int G = spec_.ep;
  const int64_t d = m.hidden;
  const int64_t local_seqs = config_.workload.batch_sequences / G;
  const int64_t rows = local_seqs * new_len;
  const int64_t step_tokens = int64_t(config_.workload.batch_sequences) * new_len;
  StepCost s;
  s.kind = "ep";
  s.ranks = G;
  s.new_len = new_len;
  s.past_len = past_len;
  s.schedule = ep_step_schedule(config_, spec_, new_len);
  const int step_idx = past_len == 0 ? 0 : past_len - prompt_tokens_ + 1;  // prefill 0, decode step t: t + 1
  for (int l = 0; l < m.layers; ++l) {
    const auto route = ep_routing(l, step_idx, rows, step_tokens);
    EpLayerCost L;
    if (m.attention) {
      L.attention.phase = Phase::attention;
      attention_kernels(L.attention, m, local_seqs, m.heads, new_len, past_len, eb);
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
    L.counts = CommCost{CommKind::control, nullptr, 1, 8.0 * per_peer * G, G, G - 1, topo_.nodes() > 1,
                        spec_.load_balancing.capacity_factor > 0 ? 2 : 1};
    CachedParts& cached = parts_[std::make_tuple(l, route.get(), new_len)];
    if (!cached.parts) cached = CachedParts{route, ep_parts(*route, s.schedule, local_seqs)};
    L.chunks = cached.parts;
    L.residual.kernels = {elementwise(KernelKind::add, 2.0 * rows * d, double(rows) * d, eb)};
    replicate(L.residual, G);
    s.ep_layers.push_back(std::move(L));
  }
  // Next decode input: upload of last-row indices, gather, rms (EpStrategy::run_step).
  s.ep_tail.kernels = {transfer(KernelKind::upload, double(local_seqs) * 4),
                       elementwise(KernelKind::gather, double(local_seqs) * d, double(local_seqs) * d, eb),
                       elementwise(KernelKind::rms_norm, double(local_seqs) * d, double(local_seqs) * d, eb)};
  replicate(s.ep_tail, G);
  return s;
}

std::shared_ptr<const std::vector<EpChunkCost>> CostModel::ep_parts(const EpRouting& route, const Schedule& schedule,
                                                                  int64_t local_seqs) const {
  const ModelConfig& m = config_.model;
  const int eb = options_.elem_bytes;
  const int G = spec_.ep;
  const int64_t d = m.hidden, k = m.top_k;
  const double expert_block = double(local_seqs) * prompt_tokens_ * k;  // ExpertBank scratch rows
  // Ranks do different expert work unless the routing is uniform: then list every rank's kernels.
  const bool uneven = options_.routing.has_sources() || !options_.routing.expert_share.empty();
  auto parts = std::make_shared<std::vector<EpChunkCost>>();
  for (const PartRows& part : schedule.parts) {
    const double n = double(part.rows);
    const double sent = n * route.sent_rows;
    const double recv = n * route.recv_rows[route.busiest];
    EpChunkCost ch;
    // dispatch: make_dispatch_plan, upload, gather, all_to_all_v
    ch.dispatch.phase = Phase::dispatch;
    ch.dispatch.kernels = {host(KernelKind::host_plan, n * k + recv), transfer(KernelKind::upload, sent * 4),
                           elementwise(KernelKind::gather, sent * d, sent * d, eb)};
    ch.dispatch.comm = CommCost{CommKind::all_to_all, route.dispatch, n * d * eb, n * route.sent_rows * d * eb, G,
                                route.peers, route.crosses_nodes, 1};
    replicate(ch.dispatch, G);
    if (route.per_source) {  // the all-ranks gather moves each rank's own rows
      ch.dispatch.hbm_bytes_all_ranks = 0;
      for (int r = 0; r < G; ++r) ch.dispatch.hbm_bytes_all_ranks += 2 * n * route.sent_rows_of[r] * d * eb;
    }
    // expert: the bank on each source's rows as they arrive (grouped by slot; no regrouping)
    ch.expert.phase = Phase::expert;
    for (int sl = 0; sl < route.max_slots; ++sl)
      expert_kernels(ch.expert.kernels, n * route.slot_rows[size_t(route.busiest) * route.max_slots + sl], d,
                     m.ffn_hidden, expert_block, eb);
    merge_same_kind(ch.expert.kernels);
    for (int r = 0; r < G; ++r) {
      std::vector<Kernel> ks;
      for (int sl = 0; sl < route.max_slots; ++sl)
        expert_kernels(ks, n * route.slot_rows[size_t(r) * route.max_slots + sl], d, m.ffn_hidden, expert_block, eb);
      for (const Kernel& kk : ks) {
        ch.expert.flops_all_ranks += kk.flops;
        ch.expert.hbm_bytes_all_ranks += kk.bytes;
      }
      if (uneven) {
        merge_same_kind(ks);
        ch.expert.kernels_all_ranks.insert(ch.expert.kernels_all_ranks.end(), ks.begin(), ks.end());
      }
    }
    // combine: all_to_all_v back, two uploads, weighted combine into the chunk's rows
    ch.combine.phase = Phase::combine;
    Kernel up = transfer(KernelKind::upload, 2 * n * k * 4);
    up.launches = 2;
    ch.combine.kernels = {up, elementwise(KernelKind::combine, sent * d, n * d, eb)};
    ch.combine.comm = CommCost{CommKind::all_to_all, route.combine, n * d * eb, n * route.sent_rows * d * eb, G,
                               route.peers, route.crosses_nodes, 1};
    replicate(ch.combine, G);
    if (route.per_source) {  // each rank combines its own returned rows
      ch.combine.hbm_bytes_all_ranks = 0;
      for (int r = 0; r < G; ++r) ch.combine.hbm_bytes_all_ranks += (n * route.sent_rows_of[r] + n) * d * eb;
    }
    parts->push_back(std::move(ch));
  }
  return parts;
}

StepCost CostModel::step_tp_pp(int new_len, int past_len) const {
  const ModelConfig& m = config_.model;
  const int eb = options_.elem_bytes;
  const int tp = spec_.tp, pp = spec_.pp, M = spec_.microbatches;
  const int64_t d = m.hidden, k = m.top_k, E = m.experts;
  const int64_t batch = config_.workload.batch_sequences;
  const int64_t mb_seqs = batch / M;
  const int64_t rows = mb_seqs * new_len;
  const int64_t step_tokens = batch * new_len;
  const int64_t cols = m.ffn_hidden / tp;
  const int layers_per_stage = m.layers / pp;
  StepCost s;
  s.kind = "tp_pp";
  s.schedule = tp_pp_stage_schedule(config_, spec_, 0);
  s.ranks = tp * pp;
  s.new_len = new_len;
  s.past_len = past_len;
  s.stages = pp;
  s.microbatches = M;
  s.tp = tp;

  // Ring all-reduce as MpiComm counts it: 2*bytes*(n-1)/n (integer) to the ring neighbour, every rank
  // of every stage's tp group. One shape serves both all-reduces of every layer.
  auto allreduce = std::make_shared<LinkLoads>(topo_, nics_);
  const int64_t buffer_bytes = rows * d * eb;
  const int64_t counted = 2 * buffer_bytes * (tp - 1) / tp;
  bool tp_crosses = false;
  for (int st = 0; st < pp; ++st)
    for (int i = 0; i < tp; ++i) {
      const int src = st * tp + i, dst = st * tp + (i + 1) % tp;
      allreduce->add(topo_, nics_, src, dst, double(counted));
      for (int j = 0; j < tp; ++j) tp_crosses = tp_crosses || topo_.link(src, st * tp + j) == LinkClass::inter_node;
    }
  const CommCost ar{tp > 1 ? CommKind::all_reduce : CommKind::none, allreduce, 1, double(buffer_bytes), tp, 1, tp_crosses, 1};
  const double stage_ranks = double(tp) * pp;
  auto residual = [&] {
    Op op;
    op.kernels = {elementwise(KernelKind::add, 2.0 * rows * d, double(rows) * d, eb)};
    replicate(op, stage_ranks);
    return op;
  };

  for (int i = 0; i < layers_per_stage; ++i) {
    TpPpLayerCost L;
    if (m.attention) {
      L.attention.phase = Phase::attention;
      attention_kernels(L.attention, m, mb_seqs, m.heads / tp, new_len, past_len, eb);
      replicate(L.attention, stage_ranks);
      L.attention_allreduce.phase = Phase::tp_allreduce;
      L.attention_allreduce.comm = ar;
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
    // Expert: gather of the assignments, every expert's column shard, weighted combine.
    const int layer = i;  // stage st runs layer st * layers_per_stage + i; the busiest stage's shares set the kernels
    std::vector<double> a(E, 0.0);
    for (int st = 0; st < pp; ++st) {
      const auto al = assignments_per_token(config_, spec_, options_.routing, st * layers_per_stage + layer, step_tokens);
      for (int e = 0; e < E; ++e) a[e] = std::max(a[e], al[e]);  // the slowest stage decides the schedule
    }
    double assignments = 0;
    for (double x : a) assignments += x * rows;
    L.expert.phase = Phase::expert;
    L.expert.kernels = {elementwise(KernelKind::gather, assignments * d, assignments * d, eb)};
    for (int e = 0; e < E; ++e) expert_kernels(L.expert.kernels, a[e] * rows, d, cols, double(rows), eb);
    L.expert.kernels.push_back(elementwise(KernelKind::combine, assignments * d, double(rows) * d, eb));
    merge_same_kind(L.expert.kernels);
    L.expert.flops_all_ranks = L.expert.hbm_bytes_all_ranks = 0;
    for (int st = 0; st < pp; ++st) {  // exact per stage (its own layer's routing)
      const auto al = assignments_per_token(config_, spec_, options_.routing, st * layers_per_stage + layer, step_tokens);
      std::vector<Kernel> ks;
      double as = 0;
      for (int e = 0; e < E; ++e) {
        expert_kernels(ks, al[e] * rows, d, cols, double(rows), eb);
        as += al[e] * rows;
      }
      ks.push_back(elementwise(KernelKind::gather, as * d, as * d, eb));
      ks.push_back(elementwise(KernelKind::combine, as * d, double(rows) * d, eb));
      for (const Kernel& kk : ks) {
        L.expert.flops_all_ranks += kk.flops * tp;
        L.expert.hbm_bytes_all_ranks += kk.bytes * tp;
      }
    }
    L.moe_allreduce.phase = Phase::tp_allreduce;
    L.moe_allreduce.comm = ar;
    L.moe_residual = residual();
    s.stage_layers.push_back(std::move(L));
  }
  // Stage 0 copies its micro-batch in; the last stage copies it out (both outside any phase).
  s.stage_input.kernels = {elementwise(KernelKind::copy, double(rows) * d, double(rows) * d, eb)};
  replicate(s.stage_input, tp);
  s.stage_output = s.stage_input;
  // pp_comm send of x [rows x d] from (stage, tp rank) to (stage + 1, tp rank), every boundary.
  if (pp > 1) {
    auto hop = std::make_shared<LinkLoads>(topo_, nics_);
    bool crosses = false;
    for (int st = 0; st + 1 < pp; ++st)
      for (int i = 0; i < tp; ++i) {
        hop->add(topo_, nics_, st * tp + i, (st + 1) * tp + i, double(buffer_bytes));
        crosses = crosses || topo_.link(st * tp + i, (st + 1) * tp + i) == LinkClass::inter_node;
      }
    s.pp_hop.phase = Phase::pp_transfer;
    s.pp_hop.comm = CommCost{CommKind::p2p, hop, 1, double(buffer_bytes), 2, 1, crosses, 1};
    // feed_back: rms(y_last) of every sequence, last stage -> stage 0.
    auto back = std::make_shared<LinkLoads>(topo_, nics_);
    bool back_crosses = false;
    for (int i = 0; i < tp; ++i) {
      back->add(topo_, nics_, (pp - 1) * tp + i, i, double(batch * d * eb));
      back_crosses = back_crosses || topo_.link((pp - 1) * tp + i, i) == LinkClass::inter_node;
    }
    s.feedback_send.phase = Phase::pp_transfer;
    s.feedback_send.comm = CommCost{CommKind::p2p, back, 1, double(batch * d * eb), 2, 1, back_crosses, 1};
  }
  s.feedback.kernels = {transfer(KernelKind::upload, double(batch) * 4),
                        elementwise(KernelKind::gather, double(batch) * d, double(batch) * d, eb),
                        elementwise(KernelKind::rms_norm, double(batch) * d, double(batch) * d, eb)};
  replicate(s.feedback, tp);
  return s;
}

CostTotals CostModel::totals(const StepCost& s) const {
  CostTotals t;
  t.links = LinkLoads(topo_, nics_);
  auto add = [&](const Op& op, double times) {
    auto& p = t.phases[static_cast<int>(op.phase)];
    p.flops += op.flops_all_ranks * times;
    p.hbm_bytes += op.hbm_bytes_all_ranks * times;
    if (op.comm.kind != CommKind::none && op.comm.kind != CommKind::control && op.comm.links)
      t.links.add_scaled(*op.comm.links, op.comm.scale * times);
  };
  for (const EpLayerCost& L : s.ep_layers) {
    add(L.attention, 1);
    add(L.gate, 1);
    for (const EpChunkCost& c : *L.chunks) {
      add(c.dispatch, 1);
      add(c.expert, 1);
      add(c.combine, 1);
    }
    add(L.residual, 1);
  }
  if (s.kind == "ep") add(s.ep_tail, 1);
  if (s.kind == "tp_pp") {
    const double M = s.microbatches;
    for (const TpPpLayerCost& L : s.stage_layers)
      for (const Op* op : {&L.attention, &L.attention_allreduce, &L.attention_residual, &L.gate, &L.expert,
                           &L.moe_allreduce, &L.moe_residual})
        add(*op, M);
    add(s.stage_input, M);
    add(s.stage_output, M);
    add(s.pp_hop, M);
    add(s.feedback, 1);
    add(s.feedback_send, 1);
  }
  return t;
}

CostTotals CostModel::iteration_totals() const {
  CostTotals t = totals(prefill());
  for (int i = 0; i < config_.workload.decode_steps; ++i) t.add(totals(decode(i)));
  return t;
}

}  // namespace moe
