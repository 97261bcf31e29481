// Per-rank memory estimates (weights, KV cache, activations, communication buffers) for tp_pp, ep
// (with expert_tp) and the single-rank FP32 reference. Counts are elements; bytes = elements * dtype_bytes.
#include "cost/memory.hpp"

#include <cstdio>

#include "core/error.hpp"

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

// tp_pp: a rank holds one stage of L/pp layers, a 1/tp shard of its attention heads and of every
// expert (W1 columns, W2 rows), plus the replicated gate.
//   weights     = (L/pp) * (4*d*HD/tp + d*E + E*2*d*f/tp)
//   kv          = (L/pp) * batch * S * 2*HD/tp
//   activations = Tm*(6*d + 3*HD/tp + E) + Tm*k*(d + f/tp) + prompt^2,   Tm = T/microbatches
//                 (residual/normed/attention/MoE rows, Q/K/V shards, gate logits; per assignment
//                  the gathered input and the hidden shard; one head's score matrix)
//   comm        = 2*Tm*d   (all-reduce buffer and stage-to-stage transfer)
// with T = batch * prompt_tokens prefill tokens. Shards of f that do not divide evenly round up.
MemoryEstimate estimate_tp_pp(const Dims& x, const StrategyConfig& s, int64_t bytes) {
  const int64_t tp = s.tp, pp = s.pp;
  const int64_t layers_here = ceil_div(x.L, pp);
  const int64_t hd_shard = ceil_div(x.HD, tp);
  const int64_t f_shard = ceil_div(x.f, tp);
  const int64_t Tm = ceil_div(x.batch * x.prompt, s.microbatches);
  const int64_t weights = layers_here * (4 * x.d * hd_shard + x.d * x.E + x.E * 2 * x.d * f_shard);
  const int64_t kv = layers_here * x.batch * x.S * 2 * hd_shard;
  const int64_t act = Tm * (6 * x.d + 3 * hd_shard + x.E) + Tm * x.k * (x.d + f_shard) + x.scores;
  const int64_t comm = 2 * Tm * x.d;
  return scaled(weights, kv, act, comm, bytes);
}

// ep (ep x expert_tp ranks): a rank owns batch/(ep*expert_tp) sequences with full attention weights and
// their KV cache, and holds its 1/expert_tp shard (f_s = f/expert_tp FFN columns) of the `hosted`
// experts per layer of its expert-TP group: ceil(E/ep) when E >= ep, else 1 (replicas of hot experts).
//   weights     = L * (4*d*HD + d*E + hosted*2*d*f_s)
//   kv          = L * (batch/ranks) * S * 2*HD
//   activations = Tl*(6*d + 3*HD + E) + Tr*(2*d + f_s) + prompt^2
//                 Tl = (batch/ranks)*prompt_tokens local tokens, Tr = Tl*k*expert_tp received rows
//                 (balanced expectation; each needs its input row, output row and hidden row)
//   comm        = 2*Tl*k*expert_tp*d   (dispatch send + receive buffers, reused by the combine)
MemoryEstimate estimate_ep(const Dims& x, const StrategyConfig& s, int64_t bytes) {
  const int64_t ep = s.ep, etp = s.expert_tp;
  const int64_t hosted = x.E >= ep ? ceil_div(x.E, ep) : 1;
  const int64_t f_shard = ceil_div(x.f, etp);
  const int64_t seqs_here = ceil_div(x.batch, ep * etp);
  const int64_t Tl = seqs_here * x.prompt;
  const int64_t Tr = Tl * x.k * etp;
  const int64_t weights = x.L * (4 * x.d * x.HD + x.d * x.E + hosted * 2 * x.d * f_shard);
  const int64_t kv = x.L * seqs_here * x.S * 2 * x.HD;
  const int64_t act = Tl * (6 * x.d + 3 * x.HD + x.E) + Tr * (2 * x.d + f_shard) + x.scores;
  const int64_t comm = 2 * Tl * x.k * etp * x.d;
  return scaled(weights, kv, act, comm, bytes);
}

}  // namespace

std::string MemoryEstimate::describe() const {
  return "weights " + memory_text(weights_bytes) + " + KV cache " + memory_text(kv_cache_bytes) + " + activations " +
         memory_text(activations_bytes) + " + comm buffers " + memory_text(comm_buffers_bytes) + " = " + memory_text(total_bytes());
}

MemoryEstimate estimate_memory(const Config& c, const StrategyConfig& s, int world_size, int dtype_bytes) {
  // The layout comes from the strategy's own sizes; validation ties them to world_size.
  (void)world_size;
  MOE_REQUIRE(dtype_bytes > 0, "dtype_bytes must be positive");
  const Dims x = dims_of(c);
  switch (kind_of(s)) {
    case StrategyKind::tp_pp:
      MOE_REQUIRE(s.tp > 0 && s.pp > 0 && s.microbatches > 0, "tp, pp and microbatches must be positive");
      return estimate_tp_pp(x, s, dtype_bytes);
    case StrategyKind::ep:
      MOE_REQUIRE(s.ep > 0 && s.expert_tp > 0, "ep and expert_tp must be positive");
      return estimate_ep(x, s, dtype_bytes);
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
