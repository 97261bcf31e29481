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
  int64_t total_bytes() const { return weights_bytes + kv_cache_bytes + activations_bytes + comm_buffers_bytes; }
  std::string describe() const;   // "weights 1.2 GB + KV cache ... = total"
};

// Largest per-rank estimate of strategy `s` on world_size ranks, dtype_bytes per element.
MemoryEstimate estimate_memory(const Config& c, const StrategyConfig& s, int world_size, int dtype_bytes);

// Memory of the single-rank FP32 reference (host) for verification.
MemoryEstimate estimate_reference_memory(const Config& c);

// "353.0 GB", "120.5 MB", "4.0 KB": decimal units, one decimal (GB from 0.1 GB up).
std::string memory_text(int64_t bytes);

}  // namespace moe
