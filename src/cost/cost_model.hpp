// Cost of a tp_pp or ep step: FLOPs, device-memory bytes and bytes per link, from the config, the
// placement and an expected routing. It mirrors the kernels and messages the strategies issue
// (tp_pp.cpp, ep.cpp, blocks.cpp), so its FLOPs and counted link bytes equal the runtime's.
// Each kind's ops are built in its own file (tp_pp_cost.cpp, ep_cost.cpp) and stored once per step
// (EpLayerCost / TpPpLayerCost and the step's own ops; ep part ops shared between steps). The step
// then attaches to every stage of its schedule a StageCost (stage_costs.cpp): which ops the stage
// runs (kernels, communication or both, and what share), so that the simulator's tasks, the totals
// and the roofline read the costed stages and the step's op list (StepCost::ops, outside_ops)
// without restating which stage runs what.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "core/config.hpp"
#include "placement/placement.hpp"
#include "schedule/phase.hpp"
#include "schedule/schedule.hpp"
#include "topology/topology.hpp"

namespace moe {

// What a kernel is, so the time model can pick its rate (hardware profile key = kernel_kind_name).
enum class KernelKind { gemm, attention, rms_norm, silu, add, copy, gather, combine, upload, download, host_route, host_plan, count };
constexpr int kNumKernelKinds = static_cast<int>(KernelKind::count);
const char* kernel_kind_name(KernelKind k);

// Work of one kind of kernel on one rank, summed over its `launches`. Device kernels have FLOPs and
// bytes read + written in device memory; upload/download move `bytes` between host and device; host
// kinds do `items` units of host work (logits for host_route, assignments for host_plan).
struct Kernel {
  KernelKind kind = KernelKind::copy;
  double flops = 0;
  double bytes = 0;
  double items = 0;
  double launches = 1;     // expected; fractional when e.g. an expert receives tokens with some probability
  bool host_sync = false;  // the host waits for the device after it (download before routing)
  double m = 0;            // gemm: [m x k] * [k x n] per launch (m may be an expected, fractional row count)
  int64_t k = 0, n = 0;
};

// Bytes one communication puts on each link. Links: every rank's intra-node port, and NIC
// (node, gpu % nics) for inter-node traffic (rail-aligned, as in summarize_traffic). `sent` is what
// the runtime counts; `recv` is used for contention at the receiver.
struct LinkLoads {
  std::vector<double> port_sent, port_recv;   // [ranks]
  std::vector<double> nic_sent, nic_recv;     // [nodes * nics]
  double intra_bytes = 0;
  double inter_bytes = 0;

  LinkLoads() = default;
  LinkLoads(const Topology& topo, int nics_per_node);
  void add(const Topology& topo, int nics_per_node, int src, int dst, double bytes);
  void add_scaled(const LinkLoads& o, double scale);  // same topology
  double max_port() const;        // busiest intra-node port, max of sent and received
  double max_nic() const;         // busiest NIC, max of sent and received
  double max_port_sent() const;   // as summarize_traffic reports
  double max_nic_sent() const;
};

enum class CommKind { none, all_to_all, all_reduce, p2p, control };

// A communication. Its link bytes are `links` x `scale` (links may be shared between operations of
// the same shape). all_reduce: `payload_bytes` is the buffer on each rank of groups of `group_size`;
// all_to_all: `peers` destinations per rank; control: `repeats` small host collectives over
// `group_size` ranks (latency only, not counted as traffic, as in the runtime).
struct CommCost {
  CommKind kind = CommKind::none;
  std::shared_ptr<const LinkLoads> links;
  double scale = 1;
  double payload_bytes = 0;
  int group_size = 1;
  int peers = 0;
  bool crosses_nodes = false;
  int repeats = 1;
};

// One operation of a step: kernels of the busiest rank (in issue order), then a communication.
// The all-ranks totals cover every rank that runs the operation once.
struct Op {
  Phase phase = Phase::other;
  std::vector<Kernel> kernels;
  CommCost control;   // host control-plane collectives (routing counts), issued with the kernels
  CommCost comm;
  double flops_all_ranks = 0;
  double hbm_bytes_all_ranks = 0;
  // When not empty: the kernels of every rank that runs the op, one after the other (ep experts under
  // a non-uniform routing, where ranks do different work); empty: `kernels` on every rank.
  std::vector<Kernel> kernels_all_ranks;

  double flops() const;       // busiest rank, device kernels
  double hbm_bytes() const;   // busiest rank, device kernels
};

// One EP part (chunk or micro-batch of the step's schedule): dispatch (plan, gather, all-to-all),
// experts, combine (all-to-all back, weighted sum).
struct EpChunkCost {
  Op dispatch;   // kernels: host plan, index upload, gather; comm: all_to_all_v
  Op expert;     // the expert GEMMs, source by source
  Op combine;    // comm: all_to_all_v back; kernels: uploads and weighted combine
};
struct EpLayerCost {
  Op attention;                     // empty when model.attention is false; every part's together
  Op gate;                          // gate GEMM and routing on the host, every part's together
  Op counts;                        // comm: the layer's count exchange(s) (control), phase dispatch
  // One entry per part of the step's schedule; shared between steps with the same routing.
  std::shared_ptr<const std::vector<EpChunkCost>> chunks;
  Op residual;                      // y = h + MoE(rms(h)), every part's together, outside any phase
};

// tp_pp: the per-micro-batch work of one stage, identical for every stage (layers divide evenly).
// An occurrence of one of these operations is every stage doing it once for one micro-batch.
struct TpPpLayerCost {
  Op attention, attention_allreduce, attention_residual;  // empty when model.attention is false
  Op gate, expert, moe_allreduce, moe_residual;
};

// An op of a step by where the step stores it (StepCost::op resolves it), so that copies of a step
// stay valid and the ep part ops shared between steps are not copied. layer: the model layer (ep) or
// the stage's layer (tp_pp); part: the ep part.
struct OpRef {
  enum class Slot : uint8_t {
    ep_attention, ep_gate, ep_counts, ep_residual, ep_dispatch, ep_expert, ep_combine, ep_tail,
    tp_attention, tp_attention_allreduce, tp_attention_residual, tp_gate, tp_expert, tp_moe_allreduce, tp_moe_residual,
    tp_pp_hop, tp_stage_input, tp_stage_output, tp_feedback, tp_feedback_send,
  };
  Slot slot = Slot::ep_tail;
  int layer = -1;
  int part = -1;
};

// What a stage runs of an op: all of it, its kernels (with its host control collectives) or its
// communication, `share` of it (an ep part's rows over the step's, for work done per part).
enum class OpPart : uint8_t { all, kernels, comm };
struct OpUse {
  OpRef op;
  OpPart part = OpPart::all;
  double share = 1;
};

// The cost of one stage of the step's schedule: the ops it runs, in order (at most two).
struct StageCost {
  Phase phase = Phase::other;   // the first op's phase: where a transfer's exposed time counts
  bool communication = false;   // a transfer (its time is communication, not compute)
  int count = 0;
  std::array<OpUse, 2> uses{};
  const OpUse* begin() const { return uses.data(); }
  const OpUse* end() const { return uses.data() + count; }
};

// An op and the number of times the step runs it (each occurrence covers every rank that runs it).
struct OpCount {
  OpRef op;
  double times = 1;
};

struct StepCost {
  StrategyKind kind = StrategyKind::ep;
  Schedule schedule;    // ep: the step's; tp_pp: pipeline stage 0's (every stage does the same work)
  int new_len = 0;      // prompt_tokens (prefill) or 1 (decode)
  int past_len = 0;     // cached positions before this step
  int ranks = 1;        // world size
  // ep
  std::vector<EpLayerCost> ep_layers;
  Op ep_tail;           // next decode input (gather of last rows, rms), outside any phase
  // tp_pp
  int stages = 1, microbatches = 1, tp = 1;
  std::vector<TpPpLayerCost> stage_layers;  // [layers per stage]
  Op stage_input;       // stage 0 copies its micro-batch in
  Op stage_output;      // the last stage copies its micro-batch out
  Op pp_hop;            // one micro-batch to the next stage (comm over every stage boundary)
  Op feedback;          // last stage: gather of last rows and rms
  Op feedback_send;     // last stage -> stage 0 (comm)

  // The costed schedule (attach_stage_costs): one entry per schedule stage (tp_pp: pipeline stage 0's,
  // whose micro-batches run the per-micro-batch ops).
  std::vector<StageCost> stage_costs;
  // Every op of the step once, with its occurrences: the ops the stages run, then the ops outside any
  // stage (ep: the next decode input; tp_pp: the stage input and output copies, the feedback). Totals
  // and rooflines sum these.
  std::vector<OpCount> ops;
  std::vector<OpCount> outside_ops;
  const Op& op(const OpRef& r) const;
};

inline const Op& StepCost::op(const OpRef& r) const {
  switch (r.slot) {
    case OpRef::Slot::ep_attention: return ep_layers.at(r.layer).attention;
    case OpRef::Slot::ep_gate: return ep_layers.at(r.layer).gate;
    case OpRef::Slot::ep_counts: return ep_layers.at(r.layer).counts;
    case OpRef::Slot::ep_residual: return ep_layers.at(r.layer).residual;
    case OpRef::Slot::ep_dispatch: return ep_layers.at(r.layer).chunks->at(r.part).dispatch;
    case OpRef::Slot::ep_expert: return ep_layers.at(r.layer).chunks->at(r.part).expert;
    case OpRef::Slot::ep_combine: return ep_layers.at(r.layer).chunks->at(r.part).combine;
    case OpRef::Slot::ep_tail: return ep_tail;
    case OpRef::Slot::tp_attention: return stage_layers.at(r.layer).attention;
    case OpRef::Slot::tp_attention_allreduce: return stage_layers.at(r.layer).attention_allreduce;
    case OpRef::Slot::tp_attention_residual: return stage_layers.at(r.layer).attention_residual;
    case OpRef::Slot::tp_gate: return stage_layers.at(r.layer).gate;
    case OpRef::Slot::tp_expert: return stage_layers.at(r.layer).expert;
    case OpRef::Slot::tp_moe_allreduce: return stage_layers.at(r.layer).moe_allreduce;
    case OpRef::Slot::tp_moe_residual: return stage_layers.at(r.layer).moe_residual;
    case OpRef::Slot::tp_pp_hop: return pp_hop;
    case OpRef::Slot::tp_stage_input: return stage_input;
    case OpRef::Slot::tp_stage_output: return stage_output;
    case OpRef::Slot::tp_feedback: return feedback;
    case OpRef::Slot::tp_feedback_send: return feedback_send;
  }
  return ep_tail;  // not reached: every slot is listed
}

// Fills s.stage_costs, s.ops and s.outside_ops from s.schedule and the step's ops: the one place that
// says which op each kind of stage runs. The cost model calls it for every step it builds; a caller
// that replaces a step's schedule by another stage list calls it again (serialized() keeps the list).
void attach_stage_costs(StepCost& s);

// Assignments per local token of each source rank: [L][G][E] (a source's row sums to at most top_k).
using SourceAssignments = std::vector<std::vector<std::vector<double>>>;

// The routing a cost is computed for.
// expert_share: expected share of the assignments each expert receives, per layer (sums to 1 per
// layer), the same for every source rank; empty: uniform (tokens*k/E per expert). The capacity is
// applied to it. tp_pp always uses it.
// source_assignments (ep, optional; replaces expert_share there): per local token of source rank g,
// the assignments to expert e that reach the expert (kept: the capacity is not applied again). A
// step's counts are value x the source's rows in the step; they split over an expert's replicas by
// split_over_replicas (the runtime's deal), so integer counts give the runtime's exact link bytes.
// step_source_assignments (optional): per step (prefill = 0, decode step t = t + 1), replacing
// source_assignments for the steps it covers; steps may share one entry.
struct ExpectedRouting {
  std::vector<std::vector<double>> expert_share;  // [L][E]
  std::shared_ptr<const SourceAssignments> source_assignments;
  std::vector<std::shared_ptr<const SourceAssignments>> step_source_assignments;  // [steps]
  bool has_sources() const { return source_assignments || !step_source_assignments.empty(); }
};

struct CostOptions {
  int elem_bytes = 2;          // activation/weight element size: 2 on GPUs (fp16/bf16), 4 on the CPU backend
  ExpectedRouting routing;
  // ep: the placement the strategy runs with; null: plan_for_strategy(config, spec, topology), as EpStrategy.
  std::shared_ptr<const Placement> placement;
};

struct PhaseTotals {
  double flops = 0;       // all ranks
  double hbm_bytes = 0;   // all ranks
};

// Sums over a step or an iteration: per phase, and the link bytes of every communication.
struct CostTotals {
  std::array<PhaseTotals, kNumPhases> phases{};
  LinkLoads links;
  double flops() const;
  double hbm_bytes() const;
  void add(const CostTotals& o);
  void add_op(const Op& op, double times);   // `times` occurrences of op (all ranks)
};

class CostModel {
 public:
  CostModel(const Config& config, const StrategyConfig& spec, CostOptions options = {});
  ~CostModel();

  // new_len = prompt_tokens with past_len 0 (prefill), or 1 with past_len = prompt_tokens + t.
  StepCost step(int new_len, int past_len) const;
  StepCost prefill() const { return step(prompt_tokens_, 0); }
  StepCost decode(int t) const { return step(1, prompt_tokens_ + t); }

  CostTotals totals(const StepCost& s) const;
  // One measured iteration: the prefill and every decode step (what the runner's counters cover
  // per iteration, warm-up excluded).
  CostTotals iteration_totals() const;

  const Topology& topology() const { return topo_; }
  // ep: the placement the costs are for (shards when expert_tp > 1); null for tp_pp.
  const Placement* placement() const { return placement_.get(); }
  int nics_per_node() const { return nics_; }
  int elem_bytes() const { return options_.elem_bytes; }

 private:
  struct EpRouting;
  void check_tp_pp() const;
  void check_ep();   // and chooses the placement
  // tp_pp (tp_pp_cost.cpp): a step, one layer of a stage (`allreduce`: its all-reduces), its experts.
  StepCost step_tp_pp(int new_len, int past_len) const;
  TpPpLayerCost tp_pp_layer(const StepCost& s, int layer, const CommCost& allreduce) const;
  Op tp_pp_experts(const StepCost& s, int layer) const;
  // ep (ep_cost.cpp): a step, one layer (`local_seqs` sequences per rank), the parts of a layer with
  // flows `route` under the step's schedule, and one part's dispatch, experts and combine (n rows per rank).
  StepCost step_ep(int new_len, int past_len) const;
  EpLayerCost ep_layer(const StepCost& s, int layer, int step_idx, int64_t local_seqs) const;
  std::shared_ptr<const std::vector<EpChunkCost>> ep_parts(const EpRouting& route, const Schedule& schedule,
                                                           int64_t local_seqs) const;
  Op ep_dispatch(const EpRouting& route, double n) const;
  Op ep_experts(const EpRouting& route, double n, int64_t local_seqs) const;
  Op ep_combine(const EpRouting& route, double n) const;
  // Flows of one layer for a step of `step_tokens` tokens, `rows` per source rank (step index as in
  // step_source_assignments).
  std::shared_ptr<const EpRouting> ep_routing(int layer, int step_idx, int64_t rows, int64_t step_tokens) const;
  std::shared_ptr<const EpRouting> ep_routing_sources(int layer, const SourceAssignments& a, int64_t rows) const;
  const SourceAssignments* sources_of_step(int step_idx) const;

  const Config& config_;
  StrategyConfig spec_;
  CostOptions options_;
  Topology topo_;
  int nics_;
  int prompt_tokens_;
  std::shared_ptr<const Placement> placement_;  // ep only
  // Flows by (layer, step tokens): the expected routing depends on the step's token count only through
  // the capacity (key -1 without one), so prefill and the decode steps each compute it once.
  mutable std::map<std::pair<int, int64_t>, std::shared_ptr<const EpRouting>> flows_;
  // Part costs by (layer, flows, new_len): steps with the same routing share them.
  // The flows are held with their parts, so that a key's address is never reused.
  struct CachedParts {
    std::shared_ptr<const EpRouting> flows;
    std::shared_ptr<const std::vector<EpChunkCost>> parts;
  };
  mutable std::map<std::tuple<int, const EpRouting*, int>, CachedParts> parts_;
  // Steps by (new_len, past_len): prefill, decode steps and the totals ask for the same steps.
  mutable std::map<std::pair<int, int>, StepCost> steps_;
  // Per-source flows by (layer, assignments, rows per source).
  mutable std::map<std::tuple<int, const SourceAssignments*, int64_t>, std::shared_ptr<const EpRouting>> by_source_;
};

// Attention of `seqs` sequences over `heads` heads for one step, as the backends count it:
// 4*new_len*ctx*head_dim FLOPs per sequence and head, ctx = past_len + new_len.
Kernel attention_kernel(int64_t seqs, int64_t heads, int64_t head_dim, int64_t new_len, int64_t past_len, int elem_bytes);
// [m x k] * [k x n] -> [m x n]: 2mkn FLOPs; reads both operands, writes the result.
Kernel gemm_kernel(double m, int64_t k, int64_t n, int elem_bytes);

}  // namespace moe
