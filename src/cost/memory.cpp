// Per-rank memory estimates (weights, KV cache, activations, communication buffers) for tp_pp, ep
// (with expert_tp) and the single-rank FP32 reference, and the CUDA runtime's share.
#include "cost/memory.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/error.hpp"
#include "cost/ep_receive.hpp"
#include "schedule/schedule.hpp"

namespace moe {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

// Decimal units, one decimal; GB from 0.1 GB up so limits read in the config's unit (memory_gb).
std::string memory_text(int64_t bytes) {
  char buf[64];
  const double b = static_cast<double>(bytes);
  if (b >= 1e8 || b == 0) std::snprintf(buf, sizeof buf, "%.1f GB", b / 1e9);
  else if (b >= 1e5) std::snprintf(buf, sizeof buf, "%.1f MB", b / 1e6);
  else std::snprintf(buf, sizeof buf, "%.1f KB", b / 1e3);
  return buf;
}

namespace {

// Shapes shared by every estimate. Attention terms vanish when model.attention is false
// (HD = 0 and no score matrix).
struct Dims {
  int64_t L, d, f, E, k, HD;
  int64_t batch, prompt;
  int64_t S;       // max sequence length = prompt_tokens + decode_steps
  int64_t scores;  // prompt_tokens^2: one head of one sequence's attention scores at a time
};

Dims dims_of(const Config& c) {
  const ModelConfig& m = c.model;
  const WorkloadConfig& w = c.workload;
  Dims x{};
  x.L = m.layers;
  x.d = m.hidden;
  x.f = m.ffn_hidden;
  x.E = m.experts;
  x.k = m.top_k;
  x.HD = m.attention ? static_cast<int64_t>(m.heads) * m.head_dim : 0;
  x.batch = w.batch_sequences;
  x.prompt = w.prompt_tokens;
  x.S = static_cast<int64_t>(w.prompt_tokens) + w.decode_steps;
  x.scores = m.attention ? x.prompt * x.prompt : 0;
  return x;
}

MemoryEstimate scaled(int64_t weights, int64_t kv, int64_t activations, int64_t comm, int64_t dtype_bytes) {
  MemoryEstimate e;
  e.weights_bytes = weights * dtype_bytes;
  e.kv_cache_bytes = kv * dtype_bytes;
  e.activations_bytes = activations * dtype_bytes;
  e.comm_buffers_bytes = comm * dtype_bytes;
  return e;
}

// The strategies' estimates count what a rank allocates (strategies/tp_pp.cpp, ep.cpp, the blocks
// of strategies/blocks.cpp): matrices of dtype_bytes per element, index and weight vectors of 4
// bytes. Layer scratch (attention q/k/v/ctx, expert hidden rows, gate logits and choices) is one
// buffer per purpose for all layers, sized for the largest. Backend workspaces, the CUDA context and
// NCCL are add_cuda_runtime's.
//
// tp_pp: a rank holds one stage of L/pp layers, heads/tp of the attention heads, a 1/tp column shard
// of every expert (W1 columns, W2 rows) and the replicated gate; Tm = (batch/microbatches)*prompt.
//   weights     = (L/pp) * (4*d*HD/tp + d*E + E*2*d*f/tp)
//   kv          = (L/pp) * batch * S * 2*HD/tp
//   activations = scratch 4*Tm*HD/tp + Tm*f/tp + Tm*E, the MoE input, gathered and expert rows
//                 Tm*d + 2*Tm*k*d, the next decode input batch*d, the prompt T*d (stage 0);
//                 vectors: gate choice 2*Tm*k (gate routing), gather and combine 3*Tm*k, batch
//   comm        = the layer input T*d (stage transfers land in it) + the all-reduce operand Tm*d
MemoryEstimate estimate_tp_pp(const Config& c, const Dims& x, const StrategyConfig& s, int64_t eb) {
  const int64_t tp = s.tp, pp = s.pp;
  const int64_t layers_here = ceil_div(x.L, pp);
  const int64_t hd_shard = c.model.attention ? int64_t(c.model.heads / tp) * c.model.head_dim : 0;
  const int64_t f_shard = x.f / tp;
  const int64_t Tm = (x.batch / s.microbatches) * x.prompt;
  const int64_t T = x.batch * x.prompt;
  MemoryEstimate e;
  e.weights_bytes = layers_here * (4 * x.d * hd_shard + x.d * x.E + x.E * 2 * x.d * f_shard) * eb;
  e.kv_cache_bytes = layers_here * x.batch * x.S * 2 * hd_shard * eb;
  const int64_t scratch = 4 * Tm * hd_shard + Tm * f_shard + Tm * x.E;
  const int64_t vectors = (c.workload.routing == "gate" ? 2 * Tm * x.k : 0) + 3 * Tm * x.k + x.batch;
  e.activations_bytes = (scratch + Tm * x.d + 2 * Tm * x.k * x.d + x.batch * x.d + T * x.d) * eb + vectors * 4;
  e.comm_buffers_bytes = (T * x.d + Tm * x.d) * eb;
  return e;
}

// ep (ep x expert_tp ranks): a rank owns batch/(ep*expert_tp) sequences with full attention weights
// and their KV cache, and holds its 1/expert_tp shard (f_s = f/expert_tp FFN columns) of the
// `hosted` experts per layer of its expert-TP group: ceil(E/ep) when E >= ep, else 1 (replicas of
// hot experts). Tl local tokens; P parts (chunks or batches) of at most `a` = part rows * k *
// expert_tp assignments each (every member of an expert's group gets the row).
//   weights     = L * (4*d*HD + d*E + hosted*2*d*f_s)
//   kv          = L * (batch/ranks) * S * 2*HD
//   activations = scratch 4*Tl*HD + Tl*k*expert_tp*f_s + Tl*E, layer input, normed rows, partial
//                 output and the prompt 4*Tl*d, the next decode input (batch/ranks)*d; vectors: gate
//                 choice 2*Tl*k (gate routing), per part send index, combine slot and weight 3*a,
//                 batch/ranks
//   comm        = per part: the rows sent and returned 2*a*d, the rows received and their expert
//                 outputs 2*R*d, R = ep_receive_rows (cost/ep_receive.hpp): a * 2.25 with the gate's
//                 routing; with synthetic routing the hosted experts' largest inclusion probabilities
//                 times the rows of every source, plus 4 standard deviations of sampling noise, at
//                 most hosted * capacity with capacity_factor. ep allocates its receive buffers
//                 for R rows and grows them only past it.
MemoryEstimate estimate_ep(const Config& c, const Dims& x, const StrategyConfig& s, int64_t eb) {
  const int64_t ep = s.ep, etp = s.expert_tp;
  const int64_t hosted = x.E >= ep ? ceil_div(x.E, ep) : 1;
  const int64_t f_shard = x.f / etp;
  const int64_t seqs_here = x.batch / (ep * etp);
  const int64_t Tl = seqs_here * x.prompt;
  const Schedule prefill = ep_step_schedule(c, s, c.workload.prompt_tokens);
  const Schedule decode = ep_step_schedule(c, s, 1);
  const int64_t parts = int64_t(std::max(prefill.parts.size(), decode.parts.size()));
  const int64_t a = max_part_rows(prefill) * x.k * etp;
  const int64_t received = ep_receive_rows(c, s);
  MemoryEstimate e;
  e.weights_bytes = x.L * (4 * x.d * x.HD + x.d * x.E + hosted * 2 * x.d * f_shard) * eb;
  e.kv_cache_bytes = x.L * seqs_here * x.S * 2 * x.HD * eb;
  const int64_t scratch = 4 * Tl * x.HD + Tl * x.k * etp * f_shard + Tl * x.E;
  const int64_t vectors = (c.workload.routing == "gate" ? 2 * Tl * x.k : 0) + parts * 3 * a + seqs_here;
  e.activations_bytes = (scratch + 4 * Tl * x.d + seqs_here * x.d) * eb + vectors * 4;
  e.comm_buffers_bytes = parts * (2 * a + 2 * received) * x.d * eb;
  return e;
}

}  // namespace

std::string MemoryEstimate::describe() const {
  return "weights " + memory_text(weights_bytes) + " + KV cache " + memory_text(kv_cache_bytes) + " + activations " +
         memory_text(activations_bytes) + " + comm buffers " + memory_text(comm_buffers_bytes) +
         (runtime_bytes > 0 ? " + CUDA runtime " + memory_text(runtime_bytes) : "") + " = " + memory_text(total_bytes());
}

void add_cuda_runtime(MemoryEstimate& e, const StrategyConfig& s, int64_t attention_workspace_bytes, int64_t staging_bytes) {
  const int64_t communicators = kind_of(s) == StrategyKind::tp_pp ? 3 : 1;
  const int64_t streams = 3;  // compute, send, receive: one cuBLAS handle each
  e.runtime_bytes += attention_workspace_bytes + staging_bytes + streams * kCublasWorkspaceBytes + kCudaContextBytes +
                     communicators * kNcclCommunicatorBytes;
}

MemoryEstimate estimate_memory(const Config& c, const StrategyConfig& s, int world_size, int dtype_bytes) {
  // The layout comes from the strategy's own sizes; validation ties them to world_size.
  (void)world_size;
  MOE_REQUIRE(dtype_bytes > 0, "dtype_bytes must be positive");
  const Dims x = dims_of(c);
  switch (kind_of(s)) {
    case StrategyKind::tp_pp:
      MOE_REQUIRE(s.tp > 0 && s.pp > 0 && s.microbatches > 0, "tp, pp and microbatches must be positive");
      return estimate_tp_pp(c, x, s, dtype_bytes);
    case StrategyKind::ep:
      MOE_REQUIRE(s.ep > 0 && s.expert_tp > 0, "ep and expert_tp must be positive");
      return estimate_ep(c, x, s, dtype_bytes);
  }
  throw Error("estimate_memory: no memory model for strategy kind '" + s.kind + "'");
}

// reference: one rank, every layer and expert, FP32 (4 bytes), the whole prefill at once.
//   weights     = L * (4*d*HD + d*E + E*2*d*f)
//   kv          = L * batch * S * 2*HD
//   activations = T*(6*d + 3*HD + E) + T*k*(d + f) + prompt^2,   T = batch * prompt_tokens
//   comm        = 0
MemoryEstimate estimate_reference_memory(const Config& c) {
  const Dims x = dims_of(c);
  const int64_t T = x.batch * x.prompt;
  const int64_t weights = x.L * (4 * x.d * x.HD + x.d * x.E + x.E * 2 * x.d * x.f);
  const int64_t kv = x.L * x.batch * x.S * 2 * x.HD;
  const int64_t act = T * (6 * x.d + 3 * x.HD + x.E) + T * x.k * (x.d + x.f) + x.scores;
  return scaled(weights, kv, act, 0, 4);
}

}  // namespace moe
