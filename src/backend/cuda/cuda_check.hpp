// Check macros for CUDA runtime, cuBLAS and NCCL calls: a failed call throws moe::Error carrying the
// call text, file:line and the library's own error string.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

namespace moe {
[[noreturn]] void throw_cuda_error(cudaError_t code, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t code, const char* call, const char* file, int line);
// `comm` may be null; when set, NCCL's last-error text for it is appended.
[[noreturn]] void throw_nccl_error(ncclResult_t code, const char* call, const char* file, int line,
                                   ncclComm_t comm = nullptr);
}  // namespace moe

#define MOE_CUDA_CHECK(call)                                                                    \
  do {                                                                                          \
    cudaError_t moe_cuda_rc_ = (call);                                                          \
    if (moe_cuda_rc_ != cudaSuccess) ::moe::throw_cuda_error(moe_cuda_rc_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: reports bad launch configurations (and earlier sticky errors).
#define MOE_CUDA_CHECK_LAUNCH() MOE_CUDA_CHECK(cudaGetLastError())

#define MOE_CUBLAS_CHECK(call)                                                                  \
  do {                                                                                          \
    cublasStatus_t moe_cublas_rc_ = (call);                                                     \
    if (moe_cublas_rc_ != CUBLAS_STATUS_SUCCESS)                                                \
      ::moe::throw_cublas_error(moe_cublas_rc_, #call, __FILE__, __LINE__);                     \
  } while (0)

#define MOE_NCCL_CHECK(call)                                                                    \
  do {                                                                                          \
    ncclResult_t moe_nccl_rc_ = (call);                                                         \
    if (moe_nccl_rc_ != ncclSuccess) ::moe::throw_nccl_error(moe_nccl_rc_, #call, __FILE__, __LINE__); \
  } while (0)

// Same, naming the communicator so NCCL's detailed last-error message is included.
#define MOE_NCCL_CHECK_COMM(call, comm)                                                         \
  do {                                                                                          \
    ncclResult_t moe_nccl_rc_ = (call);                                                         \
    if (moe_nccl_rc_ != ncclSuccess)                                                            \
      ::moe::throw_nccl_error(moe_nccl_rc_, #call, __FILE__, __LINE__, (comm));                 \
  } while (0)
