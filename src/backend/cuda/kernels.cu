// Elementwise, normalisation and row-movement kernels of the CUDA backend, templated on the storage
// type (float, __half, __nv_bfloat16) with fp32 arithmetic, and their checking host launchers.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_common.cuh"
#include "backend/cuda/kernels.hpp"
#include "core/error.hpp"
#include "core/gate_rule.hpp"

namespace moe {
namespace cuda {
namespace {

template <class T>
__global__ void gate_kernel(const T* logits, int64_t rows, int num_experts, const double* multipliers, int top_k,
                            bool renormalize, float* probs, int32_t* experts, float* weights) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < rows; t += int64_t(gridDim.x) * blockDim.x) {
    float* row = probs + t * num_experts;
    for (int e = 0; e < num_experts; ++e) row[e] = to_float(logits[t * num_experts + e]);
    // In place: the softmax reads each logit before it writes that probability.
    gate_token(row, multipliers, num_experts, top_k, renormalize, row, experts + t * top_k, weights + t * top_k);
  }
}

template <class T>
__global__ void convert_from_f32_kernel(const float* in, T* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = from_float<T>(in[i]);
}

template <class T>
__global__ void convert_to_f32_kernel(const T* in, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = to_float(in[i]);
}

// One block per row. x and y may be the same buffer: each thread rewrites only elements it read.
// The block size is fixed per launch, so the reduction order (and result) is deterministic.
template <class T>
__global__ void rms_norm_kernel(const T* x, T* y, int64_t cols, float eps) {
  __shared__ float partial[kMaxRowThreads / kWarpSize];
  const T* in = x + blockIdx.x * cols;
  T* out = y + blockIdx.x * cols;
  float ss = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float v = to_float(in[c]);
    ss += v * v;
  }
  const float total = block_sum(ss, partial);
  const float inv = rsqrtf(total / static_cast<float>(cols) + eps);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) out[c] = from_float<T>(to_float(in[c]) * inv);
}

template <class T>
__global__ void silu_kernel(T* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float v = to_float(x[i]);
    x[i] = from_float<T>(v / (1.0f + expf(-v)));
  }
}

template <class T>
__global__ void add_kernel(T* y, const T* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = from_float<T>(to_float(y[i]) + to_float(x[i]));
}

// One block per destination row. A bad index zero-fills the row and reports through `error`.
template <class T>
__global__ void gather_rows_kernel(const T* src, int64_t src_rows, const int32_t* index, T* dst, int64_t cols,
                                   DeviceErrorWord* error) {
  const int64_t r = blockIdx.x;
  const int32_t s = index[r];
  T* out = dst + r * cols;
  if (s < 0 || s >= src_rows) {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) out[c] = from_float<T>(0.0f);
    if (threadIdx.x == 0) report_error(error, kBadGatherIndex, s, src_rows);
    return;
  }
  const T* in = src + s * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) out[c] = in[c];
}

// One block per token; each thread owns columns and sums j = 0..k-1 in order in fp32, so the
// result does not depend on scheduling. Negative slots are dropped assignments.
template <class T>
__global__ void weighted_combine_kernel(const T* src, int64_t src_rows, const int32_t* slot, const float* weight,
                                        int k, T* dst, int64_t cols, bool accumulate, DeviceErrorWord* error) {
  const int64_t t = blockIdx.x;
  T* out = dst + t * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    float acc = accumulate ? to_float(out[c]) : 0.0f;
    for (int j = 0; j < k; ++j) {
      const int32_t s = slot[t * k + j];
      if (s < 0) continue;
      if (s >= src_rows) {
        if (c == threadIdx.x && threadIdx.x == 0) report_error(error, kBadCombineSlot, s, src_rows);
        continue;
      }
      acc += weight[t * k + j] * to_float(src[s * cols + c]);
    }
    out[c] = from_float<T>(acc);
  }
}

void require_stream_and_count(int64_t n, const char* op) {
  MOE_REQUIRE(n >= 0, std::string(op) + ": negative element count");
}

}  // namespace

void launch_convert_from_f32(const float* in, void* out, DType out_dtype, int64_t n, cudaStream_t s) {
  require_stream_and_count(n, "convert_from_f32");
  if (n == 0) return;
  MOE_REQUIRE(in != nullptr && out != nullptr, "convert_from_f32: null pointer");
  const int64_t blocks = elementwise_blocks(n);
  dispatch_dtype(out_dtype, [&](auto tag) {
    using T = decltype(tag);
    convert_from_f32_kernel<T><<<blocks, kElementwiseThreads, 0, s>>>(in, static_cast<T*>(out), n);
  });
  MOE_CUDA_CHECK_LAUNCH();
}

void launch_convert_to_f32(const void* in, DType in_dtype, float* out, int64_t n, cudaStream_t s) {
  require_stream_and_count(n, "convert_to_f32");
  if (n == 0) return;
  MOE_REQUIRE(in != nullptr && out != nullptr, "convert_to_f32: null pointer");
  const int64_t blocks = elementwise_blocks(n);
  dispatch_dtype(in_dtype, [&](auto tag) {
    using T = decltype(tag);
    convert_to_f32_kernel<T><<<blocks, kElementwiseThreads, 0, s>>>(static_cast<const T*>(in), out, n);
  });
  MOE_CUDA_CHECK_LAUNCH();
}

void launch_rms_norm(const void* x, void* y, DType dtype, int64_t rows, int64_t cols, float eps, cudaStream_t s) {
  MOE_REQUIRE(rows >= 0 && cols >= 0, "rms_norm: negative shape");
  MOE_REQUIRE(rows <= kMaxGridX, "rms_norm: too many rows for one launch");
  MOE_REQUIRE(eps > 0.0f, "rms_norm: eps must be positive");
  if (rows == 0 || cols == 0) return;
  MOE_REQUIRE(x != nullptr && y != nullptr, "rms_norm: null pointer");
  const int threads = row_block_threads(cols);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    rms_norm_kernel<T><<<static_cast<unsigned>(rows), threads, 0, s>>>(static_cast<const T*>(x), static_cast<T*>(y),
                                                                        cols, eps);
  });
  MOE_CUDA_CHECK_LAUNCH();
}

void launch_silu(void* x, DType dtype, int64_t n, cudaStream_t s) {
  require_stream_and_count(n, "silu");
  if (n == 0) return;
  MOE_REQUIRE(x != nullptr, "silu: null pointer");
  const int64_t blocks = elementwise_blocks(n);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    silu_kernel<T><<<blocks, kElementwiseThreads, 0, s>>>(static_cast<T*>(x), n);
  });
  MOE_CUDA_CHECK_LAUNCH();
}

void launch_add(void* y, const void* x, DType dtype, int64_t n, cudaStream_t s) {
  require_stream_and_count(n, "add");
  if (n == 0) return;
  MOE_REQUIRE(x != nullptr && y != nullptr, "add: null pointer");
  const int64_t blocks = elementwise_blocks(n);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    add_kernel<T><<<blocks, kElementwiseThreads, 0, s>>>(static_cast<T*>(y), static_cast<const T*>(x), n);
  });
  MOE_CUDA_CHECK_LAUNCH();
}

void launch_gather_rows(const void* src, int64_t src_rows, const int32_t* index, void* dst, int64_t dst_rows,
                        int64_t cols, DType dtype, DeviceErrorWord* error, cudaStream_t s) {
  MOE_REQUIRE(src_rows >= 0 && dst_rows >= 0 && cols >= 0, "gather_rows: negative shape");
  MOE_REQUIRE(dst_rows <= kMaxGridX, "gather_rows: too many rows for one launch");
  if (dst_rows == 0 || cols == 0) return;
  MOE_REQUIRE(index != nullptr && dst != nullptr && error != nullptr, "gather_rows: null pointer");
  MOE_REQUIRE(src != nullptr || src_rows == 0, "gather_rows: null source");
  const int threads = row_block_threads(cols, kMaxCopyRowThreads);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    gather_rows_kernel<T><<<static_cast<unsigned>(dst_rows), threads, 0, s>>>(
        static_cast<const T*>(src), src_rows, index, static_cast<T*>(dst), cols, error);
  });
  MOE_CUDA_CHECK_LAUNCH();
}

void launch_weighted_combine(const void* src, int64_t src_rows, const int32_t* slot, const float* weight, int k,
                             void* dst, int64_t dst_rows, int64_t cols, bool accumulate, DType dtype,
                             DeviceErrorWord* error, cudaStream_t s) {
  MOE_REQUIRE(src_rows >= 0 && dst_rows >= 0 && cols >= 0 && k > 0, "weighted_combine: negative shape or k <= 0");
  MOE_REQUIRE(dst_rows <= kMaxGridX, "weighted_combine: too many rows for one launch");
  if (dst_rows == 0 || cols == 0) return;
  MOE_REQUIRE(slot != nullptr && weight != nullptr && dst != nullptr && error != nullptr,
              "weighted_combine: null pointer");
  MOE_REQUIRE(src != nullptr || src_rows == 0, "weighted_combine: null source");
  const int threads = row_block_threads(cols, kMaxCopyRowThreads);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    weighted_combine_kernel<T><<<static_cast<unsigned>(dst_rows), threads, 0, s>>>(
        static_cast<const T*>(src), src_rows, slot, weight, k, static_cast<T*>(dst), cols, accumulate, error);
  });
  MOE_CUDA_CHECK_LAUNCH();
}

void launch_gate_top_k(const void* logits, DType dtype, int64_t rows, int num_experts, const double* multipliers,
                       int top_k, bool renormalize, float* probs, int32_t* experts, float* weights, cudaStream_t s) {
  MOE_REQUIRE(rows >= 0 && num_experts > 0 && top_k >= 1 && top_k <= num_experts, "gate_top_k: bad shape");
  if (rows == 0) return;
  MOE_REQUIRE(logits != nullptr && multipliers != nullptr && probs != nullptr && experts != nullptr && weights != nullptr,
              "gate_top_k: null pointer");
  const unsigned blocks = static_cast<unsigned>(std::min(ceil_div(rows, kElementwiseThreads), kMaxElementwiseBlocks));
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    gate_kernel<T><<<blocks, kElementwiseThreads, 0, s>>>(static_cast<const T*>(logits), rows, num_experts, multipliers,
                                                          top_k, renormalize, probs, experts, weights);
  });
  MOE_CUDA_CHECK_LAUNCH();
}

cudaDataType_t cuda_data_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return CUDA_R_32F;
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
  }
  MOE_REQUIRE(false, "unknown dtype");
  return CUDA_R_32F;
}

}  // namespace cuda
}  // namespace moe
