// Per-rank memory estimate of a strategy (weights, KV cache, activations, communication buffers),
// in bytes. Used by config validation (does it fit cluster.gpu.memory_gb?) and reported in results.
#pragma once
#include <cstdint>
#include <string>

#include "core/config.hpp"

namespace moe {

struct MemoryEstimate {
  int64_t weights_bytes = 0;
  int64_t kv_cache_bytes = 0;
  int64_t activations_bytes = 0;
  int64_t comm_buffers_bytes = 0;
  int64_t runtime_bytes = 0;  // backend, library and driver memory (add_cuda_runtime); 0 on the CPU
  int64_t total_bytes() const {
    return weights_bytes + kv_cache_bytes + activations_bytes + comm_buffers_bytes + runtime_bytes;
  }
  std::string describe() const;   // "weights 1.2 GB + KV cache ... = total"
};

// Largest per-rank estimate of strategy `s` on world_size ranks, dtype_bytes per element.
MemoryEstimate estimate_memory(const Config& c, const StrategyConfig& s, int world_size, int dtype_bytes);

// What a CUDA rank holds besides the model's tensors, added to `e.runtime_bytes`: the backend's
// fixed device workspaces (attention scores, dtype staging: their MOE_CUDA_* sizes), one cuBLAS
// workspace per stream, and constants for the CUDA context and for each NCCL communicator's buffers
// (world, plus tp and pp groups for tp_pp). The constants are documented assumptions, not measured
// by this project on a GPU: driver version, lazy module loading and NCCL_BUFFSIZE / channel counts
// move them.
constexpr int64_t kCudaContextBytes = int64_t(600) << 20;
constexpr int64_t kNcclCommunicatorBytes = int64_t(512) << 20;
constexpr int64_t kCublasWorkspaceBytes = int64_t(32) << 20;  // cuBLAS's default on Hopper
void add_cuda_runtime(MemoryEstimate& e, const StrategyConfig& s, int64_t attention_workspace_bytes = int64_t(256) << 20,
                      int64_t staging_bytes = int64_t(64) << 20);

// Memory of the single-rank FP32 reference (host) for verification.
MemoryEstimate estimate_reference_memory(const Config& c);

// "353.0 GB", "120.5 MB", "4.0 KB": decimal units, one decimal (GB from 0.1 GB up).
std::string memory_text(int64_t bytes);

}  // namespace moe
