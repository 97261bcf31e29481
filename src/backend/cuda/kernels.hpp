// Host launchers of the CUDA backend's kernels (kernels.cu, attention.cu). Each checks its raw
// arguments and launches on the given stream; callers check Mat-level shapes (launch_math.hpp).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/backend.hpp"
#include "backend/cuda/launch_math.hpp"

namespace moe {
namespace cuda {

// Codes a kernel writes into the backend's device-visible error word when it meets a bad index
// (it cannot throw); the backend turns them into exceptions at the next synchronize.
enum DeviceErrorCode : int { kNoDeviceError = 0, kBadGatherIndex = 1, kBadCombineSlot = 2 };
// Layout of the error word block: [code, offending value, bound].
struct DeviceErrorWord {
  int code;
  int value;
  long long bound;
};

void launch_convert_from_f32(const float* in, void* out, DType out_dtype, int64_t n, cudaStream_t s);
void launch_convert_to_f32(const void* in, DType in_dtype, float* out, int64_t n, cudaStream_t s);
void launch_rms_norm(const void* x, void* y, DType dtype, int64_t rows, int64_t cols, float eps, cudaStream_t s);
void launch_silu(void* x, DType dtype, int64_t n, cudaStream_t s);
void launch_add(void* y, const void* x, DType dtype, int64_t n, cudaStream_t s);
void launch_gather_rows(const void* src, int64_t src_rows, const int32_t* index, void* dst, int64_t dst_rows,
                        int64_t cols, DType dtype, DeviceErrorWord* error, cudaStream_t s);
void launch_weighted_combine(const void* src, int64_t src_rows, const int32_t* slot, const float* weight, int k,
                             void* dst, int64_t dst_rows, int64_t cols, bool accumulate, DType dtype,
                             DeviceErrorWord* error, cudaStream_t s);

// The gate's per-token rule (core/gate_rule.hpp), one thread per token: logits [rows x E] of
// `dtype` are converted into `probs` (fp32 scratch [rows x E]), then softmax, top-k by probability *
// multipliers (device array of E doubles) and the combine weights.
void launch_gate_top_k(const void* logits, DType dtype, int64_t rows, int num_experts, const double* multipliers,
                       int top_k, bool renormalize, float* probs, int32_t* experts, float* weights, cudaStream_t s);

// Causal attention of the new rows (the caches already hold positions 0 .. ctx-1), through batched
// cuBLAS products over (sequence, head) pairs and an fp32 softmax kernel, chunked to fit
// `workspace` (see plan_attention_chunks). All work is ordered on `s`; `handle` must be bound to `s`.
struct AttentionLaunch {
  AttentionGeometry geometry;
  const void* q = nullptr;
  const void* k_cache = nullptr;
  const void* v_cache = nullptr;
  void* out = nullptr;
  DType dtype = DType::f16;
  void* workspace = nullptr;
  int64_t workspace_bytes = 0;
};
void launch_attention(const AttentionLaunch& a, cublasHandle_t handle, cudaStream_t s);

cudaDataType_t cuda_data_type(DType dtype);

}  // namespace cuda
}  // namespace moe
