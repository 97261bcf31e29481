// The checks of one run, after validate_config: the world size matches the cluster, every strategy
// fits cluster.gpu.memory_gb per rank (cost/memory.hpp), and the single-rank reference is small
// enough to verify against.
#pragma once
#include <string>

#include "core/config.hpp"

namespace moe {

// Checks for a run on `world_size` ranks with activations of `dtype_bytes` bytes per element:
// validate_config, then the world size and the per-rank memory. Throws ConfigError.
void validate_for_run(const Config& c, int world_size, int dtype_bytes, const std::string& backend_name);

}  // namespace moe
