// CUDA implementation of ComputeBackend: device memory, three non-blocking streams (compute, send,
// recv), pooled events, cuBLAS products and the kernels of kernels.cu / attention.cu, in fp16, bf16
// or fp32 storage with fp32 arithmetic.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/staging_ring.hpp"

namespace moe {

struct CudaBackendOptions {
  // Scratch for the attention score block; larger problems are chunked to fit.
  int64_t attention_workspace_bytes = int64_t(256) << 20;
  // fp32 device staging for host <-> device conversion; larger transfers go in pieces.
  int64_t staging_bytes = int64_t(64) << 20;
  int initial_events = 256;
  // A stream wait longer than this ends the job (0: no limit; NCCL errors end it anyway).
  double sync_timeout_s = 0.0;
};

// Defaults overridden by MOE_CUDA_ATTENTION_WORKSPACE_MB and MOE_CUDA_STAGING_MB; sync_timeout_s is
// run.timeout_s (the watchdog's; MOE_CUDA_SYNC_TIMEOUT_S is refused, see wait_policy.hpp).
CudaBackendOptions cuda_backend_options_from_env();

class CudaComputeBackend final : public ComputeBackend {
 public:
  // Uses (and makes current) CUDA device `device`. Allocates the fixed workspaces up front.
  CudaComputeBackend(DType dtype, int device, CudaBackendOptions options = {});
  ~CudaComputeBackend() override;
  CudaComputeBackend(const CudaComputeBackend&) = delete;
  CudaComputeBackend& operator=(const CudaComputeBackend&) = delete;

  std::string name() const override { return "cuda"; }
  DType dtype() const override { return dtype_; }
  std::string device_description() const override { return description_; }

  DeviceMat alloc_mat(int64_t rows, int64_t cols) override;
  DeviceIndex alloc_index(int64_t size) override;
  DeviceWeights alloc_weights(int64_t size) override;
  int64_t allocated_bytes() const override { return memory_->live_bytes; }
  int64_t peak_allocated_bytes() const override { return memory_->peak_bytes; }
  void reset_peak_allocated() override { memory_->peak_bytes = memory_->live_bytes; }

  void upload(const float* host, const Mat& dst, Stream s) override;
  void download(const Mat& src, float* host, Stream s) override;
  void upload_index(const int32_t* host, const IndexVec& dst, Stream s) override;
  void upload_weights(const float* host, const WeightVec& dst, Stream s) override;
  void download_index(const IndexVec& src, int32_t* host, Stream s) override;
  void download_weights(const WeightVec& src, float* host, Stream s) override;
  void gate_top_k(const Mat& logits, const std::vector<double>& multipliers, int top_k, bool renormalize,
                  const IndexVec& experts, const WeightVec& weights, Stream s) override;

  void gemm(const Mat& a, const Mat& b, const Mat& c, bool accumulate, Stream s) override;
  void grouped_gemm(const std::vector<GemmProblem>& problems, bool accumulate, Stream s) override;
  void rms_norm(const Mat& x, const Mat& y, Stream s) override;
  void silu(const Mat& x, Stream s) override;
  void add(const Mat& y, const Mat& x, Stream s) override;
  void copy(const Mat& src, const Mat& dst, Stream s) override;
  void zero(const Mat& x, Stream s) override;
  void gather_rows(const Mat& src, const IndexVec& index, const Mat& dst, Stream s) override;
  void weighted_combine(const Mat& src, const IndexVec& slot, const WeightVec& weight, int k, const Mat& dst,
                        bool accumulate, Stream s) override;
  void attention(const Mat& q, const Mat& k_new, const Mat& v_new, const Mat& k_cache, const Mat& v_cache, int num_seq,
                 int past_len, int new_len, int max_len, int heads, int head_dim, const Mat& out, Stream s) override;

  Event record(Stream s) override;
  void wait(Stream waiter, Event e) override;
  void synchronize(Stream s) override;
  void synchronize_all() override;
  double elapsed_ms(Event start, Event end) override;
  void reset_events() override { next_event_ = 0; }
  void range_push(const char* name) override;
  void range_pop() override;

  int64_t flops() const override { return flops_; }
  void reset_counters() override { flops_ = 0; }

  // ---- CUDA-specific (used by NcclComm and the factory) ----
  int device() const { return device_; }
  cudaStream_t stream(Stream s) const;
  // Backend-owned scratch (attention workspace, staging), not part of allocated_bytes().
  int64_t workspace_bytes() const;
  // Hooks run while synchronize() waits on a stream (NCCL async-error polling). A hook throws to
  // end the wait. Hooks must be removed before the object that registered them dies.
  int add_sync_poll(std::function<void()> poll);
  void remove_sync_poll(int id);

 private:
  // A backend-owned buffer shared by all streams: a use on a new stream first waits for the
  // previous user's release event, so stream order protects it without host synchronisation.
  struct SharedScratch {
    void* data = nullptr;
    int64_t bytes = 0;
    cudaEvent_t released = nullptr;
    int last_stream = -1;
  };
  struct MemoryCounters {
    int64_t live_bytes = 0;
    int64_t peak_bytes = 0;
  };

  DeviceBuffer alloc_bytes(int64_t bytes);
  void acquire(SharedScratch& scratch, Stream s);
  void release(SharedScratch& scratch, Stream s);
  void wait_stream(Stream s);
  void check_device_errors();
  void destroy_resources() noexcept;
  cublasHandle_t blas(Stream s) const { return blas_[static_cast<int>(s)]; }
  cudaEvent_t event(Event e, const char* what) const;
  void append_to_cache(const Mat& src, const Mat& cache, int num_seq, int past_len, int new_len, int max_len,
                       cudaStream_t st);
  // Host -> device copy of `bytes` through the pinned ring: the host data is copied into pinned
  // memory at once (the caller's buffer may go away on return) and the device copy is queued on
  // `st`, fenced so that the region is reused only after it has completed. `after_piece(offset,
  // count)` runs after each piece's copy is queued (the staging conversion kernel).
  void copy_to_device(void* dst, const void* host, int64_t bytes, cudaStream_t st,
                      const std::function<void(int64_t, int64_t)>& after_piece = {});
  void wait_fence(uint64_t fence);
  uint64_t fence_on(cudaStream_t st);

  DType dtype_;
  int device_ = 0;
  CudaBackendOptions options_;
  std::string description_;
  std::array<cudaStream_t, kNumStreams> streams_{};
  // One cuBLAS handle per stream, bound once: products on different streams never share a
  // handle's workspace, so concurrent streams cannot race inside cuBLAS.
  std::array<cublasHandle_t, kNumStreams> blas_{};
  std::vector<cudaEvent_t> events_;
  int next_event_ = 0;
  SharedScratch staging_;    // fp32 elements for dtype conversion on upload / download
  SharedScratch attention_;  // attention score blocks and pointer arrays
  // Pinned host staging for uploads (staging_bytes of it) and the events that fence its regions.
  void* pinned_ = nullptr;
  std::unique_ptr<StagingRing> pinned_ring_;
  std::map<uint64_t, cudaEvent_t> fences_;
  std::vector<cudaEvent_t> spare_fence_events_;
  uint64_t next_fence_ = 1;
  // Device gate: the multipliers (E doubles) and fp32 probabilities scratch, grown on demand.
  DeviceBuffer gate_multipliers_, gate_probs_;
  // grouped_gemm's device pointer arrays, one per stream (a stream's calls are ordered on it).
  std::array<DeviceBuffer, kNumStreams> grouped_pointers_;
  // Mapped pinned host memory that kernels write on a bad index; read after each synchronize.
  cuda::DeviceErrorWord* error_word_host_ = nullptr;
  cuda::DeviceErrorWord* error_word_device_ = nullptr;
  std::shared_ptr<MemoryCounters> memory_ = std::make_shared<MemoryCounters>();
  int64_t flops_ = 0;
  std::map<int, std::function<void()>> polls_;
  int next_poll_id_ = 0;
};

}  // namespace moe
