// Causal multi-head attention over a KV cache on CUDA: batched cuBLAS products over (sequence, head)
// pairs for scores (fp32 out) and P.V, an fp32 softmax kernel with the causal mask, chunked so the
// score block fits a fixed workspace (no allocation per call).
#include <cmath>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_common.cuh"
#include "backend/cuda/kernels.hpp"
#include "core/error.hpp"

namespace moe {
namespace cuda {
namespace {

// Fills the six pointer arrays (each `num_pairs` long) of one chunk: keys, queries, scores for the
// score product; values, probabilities, outputs for the P.V product.
template <class T>
__global__ void attention_pointers_kernel(AttentionGeometry g, int64_t first_pair, int64_t num_pairs,
                                          int64_t first_row, int64_t rows, int64_t ctx_chunk, const T* q,
                                          const T* k_cache, const T* v_cache, T* out, float* scores, T* probs,
                                          const void** ptrs) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t >= num_pairs) return;
  const int64_t pair = first_pair + t;
  const int64_t seq = pair_seq(g, pair), head = pair_head(g, pair);
  ptrs[0 * num_pairs + t] = k_cache + cache_offset(g, seq, head, 0);
  ptrs[1 * num_pairs + t] = q + new_row_offset(g, seq, head, first_row);
  ptrs[2 * num_pairs + t] = scores + t * rows * ctx_chunk;
  ptrs[3 * num_pairs + t] = v_cache + cache_offset(g, seq, head, 0);
  ptrs[4 * num_pairs + t] = probs + t * rows * ctx_chunk;
  ptrs[5 * num_pairs + t] = out + new_row_offset(g, seq, head, first_row);
}

// One block per score row (pair-major, then query row). Row i of a pair sees keys
// 0 .. first_visible - 1 + i; later keys get probability 0. Scores arrive already scaled.
template <class T>
__global__ void causal_softmax_kernel(const float* scores, T* probs, int64_t rows_per_pair, int64_t ctx_chunk,
                                      int64_t first_visible) {
  __shared__ float scratch[kMaxRowThreads / kWarpSize];
  const int64_t row = blockIdx.x;
  const int64_t visible = first_visible + row % rows_per_pair;
  const float* s = scores + row * ctx_chunk;
  T* p = probs + row * ctx_chunk;
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < visible; j += blockDim.x) m = fmaxf(m, s[j]);
  m = block_max(m, scratch);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < visible; j += blockDim.x) sum += expf(s[j] - m);
  sum = block_sum(sum, scratch);
  const float inv = 1.0f / sum;
  for (int64_t j = threadIdx.x; j < ctx_chunk; j += blockDim.x)
    p[j] = from_float<T>(j < visible ? expf(s[j] - m) * inv : 0.0f);
}

cublasOperation_t op(bool trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

void batched_gemm(cublasHandle_t handle, const ColumnMajorGemm& g, float alpha, const void** a, const void** b,
                  cudaDataType_t ab_type, void** c, cudaDataType_t c_type, int64_t batch) {
  MOE_REQUIRE(fits_cublas(g) && batch <= kMaxCublasDim, "attention: product exceeds cuBLAS's int range");
  const float beta = 0.0f;
  MOE_CUBLAS_CHECK(cublasGemmBatchedEx(handle, op(g.trans_a), op(g.trans_b), static_cast<int>(g.m),
                                       static_cast<int>(g.n), static_cast<int>(g.k), &alpha, a, ab_type,
                                       static_cast<int>(g.lda), b, ab_type, static_cast<int>(g.ldb), &beta, c, c_type,
                                       static_cast<int>(g.ldc), static_cast<int>(batch), CUBLAS_COMPUTE_32F,
                                       CUBLAS_GEMM_DEFAULT));
}

}  // namespace

void launch_attention(const AttentionLaunch& a, cublasHandle_t handle, cudaStream_t s) {
  const AttentionGeometry& g = a.geometry;
  MOE_REQUIRE(g.num_seq >= 0 && g.past_len >= 0 && g.new_len >= 0 && g.heads > 0 && g.head_dim > 0,
              "attention: bad geometry");
  MOE_REQUIRE(g.ctx() <= g.max_len, "attention: KV cache overflow");
  if (g.num_seq == 0 || g.new_len == 0) return;
  MOE_REQUIRE(a.q != nullptr && a.k_cache != nullptr && a.v_cache != nullptr && a.out != nullptr,
              "attention: null operand");
  MOE_REQUIRE(a.workspace != nullptr && handle != nullptr, "attention: no workspace or cuBLAS handle");
  const int probs_bytes = dtype_bytes(a.dtype);
  const AttentionChunks chunks = plan_attention_chunks(g.num_pairs(), g.new_len, g.ctx(), probs_bytes, a.workspace_bytes);
  MOE_REQUIRE(chunks.rows_per_chunk > 0,
              "attention: a workspace of " + std::to_string(a.workspace_bytes) + " bytes cannot hold one score row of " +
                  std::to_string(g.ctx()) + " keys (raise MOE_CUDA_ATTENTION_WORKSPACE_MB)");
  const cudaDataType_t type = cuda_data_type(a.dtype);
  const float scale = 1.0f / std::sqrt(static_cast<float>(g.head_dim));
  char* ws = static_cast<char*>(a.workspace);

  for (int64_t r0 = 0; r0 < g.new_len; r0 += chunks.rows_per_chunk) {
    const int64_t rows = std::min(chunks.rows_per_chunk, g.new_len - r0);
    const int64_t ctx_chunk = chunk_context(g, r0, rows);  // causal: later keys are invisible to these rows
    for (int64_t p0 = 0; p0 < g.num_pairs(); p0 += chunks.pairs_per_chunk) {
      const int64_t pairs = std::min(chunks.pairs_per_chunk, g.num_pairs() - p0);
      const AttentionWorkspaceLayout layout = attention_workspace_layout(pairs, rows, ctx_chunk, probs_bytes);
      MOE_REQUIRE(layout.total_bytes <= a.workspace_bytes, "attention: chunk exceeds the workspace");
      auto** ptrs = reinterpret_cast<const void**>(ws + layout.pointers_offset);
      auto* scores = reinterpret_cast<float*>(ws + layout.scores_offset);
      void* probs = ws + layout.probs_offset;
      const int64_t rows_total = pairs * rows;
      MOE_REQUIRE(rows_total <= kMaxGridX, "attention: too many score rows for one launch");

      dispatch_dtype(a.dtype, [&](auto tag) {
        using T = decltype(tag);
        const unsigned blocks = static_cast<unsigned>(ceil_div(pairs, kElementwiseThreads));
        attention_pointers_kernel<T><<<blocks, kElementwiseThreads, 0, s>>>(
            g, p0, pairs, r0, rows, ctx_chunk, static_cast<const T*>(a.q), static_cast<const T*>(a.k_cache),
            static_cast<const T*>(a.v_cache), static_cast<T*>(a.out), scores, static_cast<T*>(probs), ptrs);
      });
      MOE_CUDA_CHECK_LAUNCH();

      batched_gemm(handle, attention_scores_gemm(rows, ctx_chunk, g.head_dim, g.hd()), scale, ptrs + 0 * pairs,
                   ptrs + 1 * pairs, type, const_cast<void**>(ptrs + 2 * pairs), CUDA_R_32F, pairs);

      dispatch_dtype(a.dtype, [&](auto tag) {
        using T = decltype(tag);
        causal_softmax_kernel<T><<<static_cast<unsigned>(rows_total), row_block_threads(ctx_chunk), 0, s>>>(
            scores, static_cast<T*>(probs), rows, ctx_chunk, visible_keys(g, r0));
      });
      MOE_CUDA_CHECK_LAUNCH();

      batched_gemm(handle, attention_pv_gemm(rows, ctx_chunk, g.head_dim, g.hd()), 1.0f, ptrs + 3 * pairs,
                   ptrs + 4 * pairs, type, const_cast<void**>(ptrs + 5 * pairs), type, pairs);
    }
  }
}

}  // namespace cuda
}  // namespace moe
