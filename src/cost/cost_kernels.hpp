// Internal to src/cost: the kernels the strategies' blocks issue, as the cost model counts them
// (shared by the per-kind step builders, ep_cost.cpp and tp_pp_cost.cpp).
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include "cost/cost_model.hpp"

namespace moe {
namespace cost_kernels {

inline Kernel elementwise(KernelKind kind, double read_elems, double write_elems, int eb) {
  Kernel k;
  k.kind = kind;
  k.bytes = (read_elems + write_elems) * eb;
  return k;
}
inline Kernel transfer(KernelKind kind, double bytes, bool sync = false) {
  Kernel k;
  k.kind = kind;
  k.bytes = bytes;
  k.host_sync = sync;
  return k;
}
inline Kernel host(KernelKind kind, double items) {
  Kernel k;
  k.kind = kind;
  k.items = items;
  return k;
}

// Fill the all-ranks totals of an op run identically on `ranks` ranks.
inline void replicate(Op& op, double ranks) {
  op.flops_all_ranks = op.flops() * ranks;
  op.hbm_bytes_all_ranks = op.hbm_bytes() * ranks;
}

// Attention block (blocks.cpp AttentionBlock::forward) preceded by rms_norm: rows = seqs * new_len.
inline void attention_kernels(Op& op, const ModelConfig& m, int64_t seqs, int64_t heads, int new_len, int past_len, int eb) {
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
inline void expert_kernels(std::vector<Kernel>& out, double rows, int64_t d, int64_t cols, double block, int eb) {
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

inline void merge_same_kind(std::vector<Kernel>& ks) {
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

}  // namespace cost_kernels
}  // namespace moe
