// Index math of the CUDA backend that needs no nvcc: shape checks, launch geometry, the mapping of
// row-major products onto column-major cuBLAS calls, attention offsets and workspace chunking.
// Kernels and launchers use these functions; the CPU unit tests exercise them directly.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

#include "backend/backend.hpp"

#include "core/host_device.hpp"

namespace moe {
namespace cuda {

constexpr int kWarpSize = 32;
constexpr int kElementwiseThreads = 256;
constexpr int kMaxRowThreads = 1024;            // reduction kernels: one block of up to 1024 per row
constexpr int kMaxCopyRowThreads = 256;         // row copies: enough lanes to stream one row
constexpr int64_t kMaxGridX = 2147483647;       // CUDA limit on gridDim.x
constexpr int64_t kMaxElementwiseBlocks = 65536;  // grid-stride loops cover the rest
constexpr int64_t kMaxCublasDim = 2147483647;   // cuBLAS takes int dimensions and leading dims
constexpr int64_t kWorkspaceAlign = 256;
// Batched GEMM calls carry at most this many products: cuBLAS spreads a batch over grid dimension
// y/z, limited to 65535 blocks, and larger batches are not documented to work on every version.
constexpr int64_t kMaxGemmBatch = 65535;
// cudaMemcpy2D's pitch limit (cudaDevAttrMaxPitch is 2^31 - 1 on current GPUs).
constexpr int64_t kMaxCopyPitch = 2147483647;

// How the KV append copies the new rows into the cache: one 2D copy (one row of the copy per
// sequence, pitch max_len rows) when the pitch fits, else one copy per sequence (at hidden 8192 in
// fp16 the 2D copy stops fitting above about 131k positions per sequence).
MOE_HD inline bool kv_append_as_one_copy(int64_t max_len, int64_t row_bytes) {
  return max_len * row_bytes <= kMaxCopyPitch;
}

MOE_HD inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
MOE_HD inline int64_t align_up(int64_t x, int64_t a) { return ceil_div(x, a) * a; }

// Blocks for a grid-stride elementwise kernel over n elements (0 when there is nothing to do).
inline int64_t elementwise_blocks(int64_t n, int threads = kElementwiseThreads) {
  if (n <= 0) return 0;
  return std::min(ceil_div(n, threads), kMaxElementwiseBlocks);
}

// Threads of a one-block-per-row kernel: a warp multiple covering `cols` (one element per thread
// when possible), between one warp and `max_threads`. Block reductions rely on the warp multiple.
inline int row_block_threads(int64_t cols, int max_threads = kMaxRowThreads) {
  const int64_t t = align_up(std::max<int64_t>(cols, 1), kWarpSize);
  return static_cast<int>(std::min<int64_t>(t, max_threads));
}

// ---- row-major products on column-major cuBLAS ----
// A row-major [r x c] matrix with row stride ld is, read column-major, its transpose [c x r] with
// leading dimension ld. Every product below is therefore issued as the transposed product.
struct ColumnMajorGemm {
  bool trans_a = false;  // op on cuBLAS's first operand
  bool trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 1, ldb = 1, ldc = 1;
};

// C[m x n] = A[m x k] * B[k x n] (all row-major, contiguous) as C^T = B^T A^T: cuBLAS's first
// operand is B (ld n), its second is A (ld k), C has ld n.
inline ColumnMajorGemm row_major_gemm(int64_t m, int64_t n, int64_t k) {
  ColumnMajorGemm g;
  g.m = n;
  g.n = m;
  g.k = k;
  g.lda = std::max<int64_t>(n, 1);
  g.ldb = std::max<int64_t>(k, 1);
  g.ldc = std::max<int64_t>(n, 1);
  return g;
}

// Attention scores of `rows` queries of one (sequence, head) against `ctx` cached keys:
// S[rows x ctx] = Q K^T with Q, K rows of stride hd (= heads * head_dim), S contiguous (ld ctx).
// Column-major: S^T[ctx x rows] = K[ctx x D] * Q^T, so the first operand is the key block (stored as
// K^T, hence transposed) and the second the query block. Operands: first = keys, second = queries.
inline ColumnMajorGemm attention_scores_gemm(int64_t rows, int64_t ctx, int64_t head_dim, int64_t hd) {
  ColumnMajorGemm g;
  g.trans_a = true;
  g.trans_b = false;
  g.m = ctx;
  g.n = rows;
  g.k = head_dim;
  g.lda = hd;
  g.ldb = hd;
  g.ldc = std::max<int64_t>(ctx, 1);
  return g;
}

// O[rows x D] = P[rows x ctx] V[ctx x D], P contiguous (ld ctx), V and O with row stride hd.
// Column-major: O^T = V^T P^T. Operands: first = values, second = probabilities.
inline ColumnMajorGemm attention_pv_gemm(int64_t rows, int64_t ctx, int64_t head_dim, int64_t hd) {
  ColumnMajorGemm g;
  g.m = head_dim;
  g.n = rows;
  g.k = ctx;
  g.lda = hd;
  g.ldb = std::max<int64_t>(ctx, 1);
  g.ldc = hd;
  return g;
}

inline bool fits_cublas(const ColumnMajorGemm& g) {
  return g.m <= kMaxCublasDim && g.n <= kMaxCublasDim && g.k <= kMaxCublasDim && g.lda <= kMaxCublasDim &&
         g.ldb <= kMaxCublasDim && g.ldc <= kMaxCublasDim;
}

// ---- attention geometry (element offsets; sequence-major rows, heads side by side in a row) ----
struct AttentionGeometry {
  int64_t num_seq = 0, past_len = 0, new_len = 0, max_len = 0, heads = 0, head_dim = 0;
  MOE_HD int64_t hd() const { return heads * head_dim; }
  MOE_HD int64_t ctx() const { return past_len + new_len; }
  MOE_HD int64_t num_pairs() const { return num_seq * heads; }  // (sequence, head) pairs
};

// Element offset of head `head` of new row `row` (0-based within the sequence's new rows) in
// q / k_new / v_new / out.
MOE_HD inline int64_t new_row_offset(const AttentionGeometry& g, int64_t seq, int64_t head, int64_t row) {
  return (seq * g.new_len + row) * g.hd() + head * g.head_dim;
}
// Element offset of head `head` at cache position `pos` of sequence `seq` in k_cache / v_cache.
MOE_HD inline int64_t cache_offset(const AttentionGeometry& g, int64_t seq, int64_t head, int64_t pos) {
  return (seq * g.max_len + pos) * g.hd() + head * g.head_dim;
}
// Pair index p = seq * heads + head.
MOE_HD inline int64_t pair_seq(const AttentionGeometry& g, int64_t pair) { return pair / g.heads; }
MOE_HD inline int64_t pair_head(const AttentionGeometry& g, int64_t pair) { return pair % g.heads; }
// Query rows [first_row, first_row + num_rows) attend at most to cache positions below this bound
// (causal), so a chunk's products only need this many key columns.
MOE_HD inline int64_t chunk_context(const AttentionGeometry& g, int64_t first_row, int64_t num_rows) {
  return g.past_len + first_row + num_rows;
}
// Key columns visible to query row `row` (causal): positions 0 .. past_len + row.
MOE_HD inline int64_t visible_keys(const AttentionGeometry& g, int64_t row) { return g.past_len + row + 1; }

// The attention workspace holds, for one chunk of `pairs` pairs x `rows` query rows x `ctx` keys:
// six device pointer arrays for the two batched products, fp32 scores, and probabilities in the
// activation dtype (the P.V product takes both operands in one dtype).
struct AttentionWorkspaceLayout {
  int64_t pointers_offset = 0;
  int64_t scores_offset = 0;
  int64_t probs_offset = 0;
  int64_t total_bytes = 0;
};
constexpr int kAttentionPointerArrays = 6;

inline AttentionWorkspaceLayout attention_workspace_layout(int64_t pairs, int64_t rows, int64_t ctx, int probs_bytes) {
  AttentionWorkspaceLayout l;
  l.pointers_offset = 0;
  l.scores_offset = align_up(kAttentionPointerArrays * pairs * static_cast<int64_t>(sizeof(void*)), kWorkspaceAlign);
  l.probs_offset = l.scores_offset + align_up(pairs * rows * ctx * 4, kWorkspaceAlign);
  l.total_bytes = l.probs_offset + align_up(pairs * rows * ctx * probs_bytes, kWorkspaceAlign);
  return l;
}

// How the (pair, query row) work is cut to fit the workspace. Whole pairs are batched while one
// pair's full score block fits; otherwise one pair at a time with as many query rows as fit.
// rows_per_chunk == 0 means even one query row does not fit.
struct AttentionChunks {
  int64_t pairs_per_chunk = 0;
  int64_t rows_per_chunk = 0;
};

inline AttentionChunks plan_attention_chunks(int64_t num_pairs, int64_t new_len, int64_t ctx, int probs_bytes,
                                             int64_t workspace_bytes) {
  AttentionChunks c;
  if (num_pairs <= 0 || new_len <= 0 || ctx <= 0) return c;
  auto fits = [&](int64_t p, int64_t r) {
    return attention_workspace_layout(p, r, ctx, probs_bytes).total_bytes <= workspace_bytes;
  };
  const int64_t per_row = ctx * (4 + probs_bytes);
  const int64_t usable = std::max<int64_t>(workspace_bytes - 3 * kWorkspaceAlign, 0);
  if (fits(1, new_len)) {
    const int64_t per_pair = new_len * per_row + kAttentionPointerArrays * static_cast<int64_t>(sizeof(void*));
    int64_t p = std::min(num_pairs, std::max<int64_t>(usable / per_pair, 1));
    // One softmax block per score row: keep the grid within gridDim.x, and batches within cuBLAS's.
    p = std::min(p, std::max<int64_t>(kMaxGridX / new_len, 1));
    p = std::min(p, kMaxGemmBatch);
    while (p > 1 && !fits(p, new_len)) --p;
    c.pairs_per_chunk = p;
    c.rows_per_chunk = new_len;
    return c;
  }
  int64_t r = std::min(new_len, usable / per_row);
  while (r > 0 && !fits(1, r)) --r;
  c.pairs_per_chunk = r > 0 ? 1 : 0;
  c.rows_per_chunk = r;
  return c;
}

// FLOPs the attention call is charged with: both products over the full context for every new
// row, 2 * new_len * ctx * D each, per (sequence, head). The causal chunking computes fewer for
// prefill; the count follows the cost model (and the CPU backend), not the kernel's shortcut.
inline int64_t attention_flops(const AttentionGeometry& g) {
  return g.num_pairs() * 4 * g.new_len * g.ctx() * g.head_dim;
}

// ---- shape checks: "" when valid, else a message naming the operation and the problem ----
inline std::string shape_str(const Mat& m) {
  return "[" + std::to_string(m.rows) + " x " + std::to_string(m.cols) + "]";
}

inline bool ranges_overlap(const void* a, int64_t a_bytes, const void* b, int64_t b_bytes) {
  if (a_bytes <= 0 || b_bytes <= 0) return false;
  const auto pa = reinterpret_cast<std::uintptr_t>(a), pb = reinterpret_cast<std::uintptr_t>(b);
  return pa < pb + static_cast<std::uintptr_t>(b_bytes) && pb < pa + static_cast<std::uintptr_t>(a_bytes);
}

inline std::string check_mat(const Mat& m, DType dtype, const std::string& what) {
  if (m.rows < 0 || m.cols < 0) return what + ": negative shape " + shape_str(m);
  if (m.dtype != dtype)
    return what + ": dtype " + dtype_name(m.dtype) + " but the backend computes in " + dtype_name(dtype);
  if (m.data == nullptr && m.elements() > 0) return what + ": null data for " + shape_str(m);
  return "";
}

inline std::string check_same_shape(const Mat& a, const Mat& b, const std::string& op) {
  if (a.rows != b.rows || a.cols != b.cols) return op + ": shape mismatch " + shape_str(a) + " vs " + shape_str(b);
  return "";
}

// x and y are either the same buffer or disjoint (kernels read and write element-wise).
inline std::string check_alias_or_disjoint(const Mat& x, const Mat& y, const std::string& op) {
  if (x.data != y.data && ranges_overlap(x.data, x.bytes(), y.data, y.bytes()))
    return op + ": operands partially overlap";
  return "";
}

inline std::string check_gemm(const Mat& a, const Mat& b, const Mat& c) {
  if (a.cols != b.rows || c.rows != a.rows || c.cols != b.cols)
    return "gemm: " + shape_str(a) + " * " + shape_str(b) + " -> " + shape_str(c);
  if (a.rows > kMaxCublasDim || b.cols > kMaxCublasDim || a.cols > kMaxCublasDim)
    return "gemm: dimensions exceed cuBLAS's int range";
  if (ranges_overlap(c.data, c.bytes(), a.data, a.bytes()) || ranges_overlap(c.data, c.bytes(), b.data, b.bytes()))
    return "gemm: output overlaps an input";
  return "";
}

inline std::string check_gather(const Mat& src, const IndexVec& index, const Mat& dst) {
  if (src.cols != dst.cols) return "gather_rows: row width " + std::to_string(src.cols) + " vs " + std::to_string(dst.cols);
  if (index.size < dst.rows)
    return "gather_rows: " + std::to_string(index.size) + " indices for " + std::to_string(dst.rows) + " rows";
  if (index.data == nullptr && dst.rows > 0) return "gather_rows: null index";
  if (dst.rows > kMaxGridX) return "gather_rows: too many rows for one launch";
  if (ranges_overlap(src.data, src.bytes(), dst.data, dst.bytes())) return "gather_rows: source and destination overlap";
  return "";
}

inline std::string check_combine(const Mat& src, const IndexVec& slot, const WeightVec& weight, int k, const Mat& dst) {
  if (k <= 0) return "weighted_combine: k must be positive";
  if (src.cols != dst.cols)
    return "weighted_combine: row width " + std::to_string(src.cols) + " vs " + std::to_string(dst.cols);
  if (slot.size < dst.rows * k || weight.size < dst.rows * k)
    return "weighted_combine: need " + std::to_string(dst.rows * k) + " slots and weights, got " +
           std::to_string(slot.size) + " and " + std::to_string(weight.size);
  if (dst.rows > 0 && (slot.data == nullptr || weight.data == nullptr)) return "weighted_combine: null slots or weights";
  if (dst.rows > kMaxGridX) return "weighted_combine: too many rows for one launch";
  if (ranges_overlap(src.data, src.bytes(), dst.data, dst.bytes()))
    return "weighted_combine: source and destination overlap";
  return "";
}

inline std::string check_attention(const Mat& q, const Mat& k_new, const Mat& v_new, const Mat& k_cache,
                                   const Mat& v_cache, const AttentionGeometry& g, const Mat& out) {
  if (g.num_seq < 0 || g.past_len < 0 || g.new_len < 0 || g.max_len < 0 || g.heads <= 0 || g.head_dim <= 0)
    return "attention: negative sizes or no heads";
  const int64_t hd = g.hd();
  if (q.cols != hd || k_new.cols != hd || v_new.cols != hd || k_cache.cols != hd || v_cache.cols != hd || out.cols != hd)
    return "attention: every operand needs heads*head_dim = " + std::to_string(hd) + " columns";
  const int64_t rows = g.num_seq * g.new_len;
  if (q.rows != rows || k_new.rows != rows || v_new.rows != rows || out.rows != rows)
    return "attention: q/k_new/v_new/out need num_seq*new_len = " + std::to_string(rows) + " rows";
  if (k_cache.rows != g.num_seq * g.max_len || v_cache.rows != k_cache.rows)
    return "attention: caches need num_seq*max_len = " + std::to_string(g.num_seq * g.max_len) + " rows";
  if (g.ctx() > g.max_len)
    return "attention: KV cache overflow (" + std::to_string(g.ctx()) + " positions > capacity " +
           std::to_string(g.max_len) + ")";
  if (ranges_overlap(k_cache.data, k_cache.bytes(), v_cache.data, v_cache.bytes()))
    return "attention: k_cache and v_cache overlap";
  if (ranges_overlap(out.data, out.bytes(), k_cache.data, k_cache.bytes()) ||
      ranges_overlap(out.data, out.bytes(), v_cache.data, v_cache.bytes()))
    return "attention: out overlaps a cache";
  const ColumnMajorGemm s = attention_scores_gemm(g.new_len, g.ctx(), g.head_dim, hd);
  const ColumnMajorGemm pv = attention_pv_gemm(g.new_len, g.ctx(), g.head_dim, hd);
  if (!fits_cublas(s) || !fits_cublas(pv)) return "attention: dimensions exceed cuBLAS's int range";
  return "";
}

}  // namespace cuda
}  // namespace moe
