// World size and memory checks of a run; every failure is a ConfigError naming the key to change.
#include "runner/run_validation.hpp"

#include <cstdio>
#include <sstream>

#include "core/error.hpp"
#include "cost/memory.hpp"

namespace moe {
namespace {

// The single-rank FP32 reference runs on the host; beyond this it is not worth attempting.
constexpr double kReferenceLimitGb = 64;

std::string num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

std::string gb(double bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f GB", bytes / 1e9);
  return buf;
}

std::string dtype_label(const Config& c, int dtype_bytes) {
  if (dtype_bytes == 4) return "fp32";
  if (dtype_bytes == 2) return c.model.dtype == "bf16" ? "bf16" : "fp16";
  return std::to_string(dtype_bytes) + "-byte";
}

}  // namespace

void validate_for_run(const Config& c, int world_size, int dtype_bytes, const std::string& backend_name) {
  validate_config(c);
  MOE_REQUIRE(dtype_bytes > 0, "dtype_bytes must be positive");
  const int64_t world = static_cast<int64_t>(c.cluster.nodes) * c.cluster.gpus_per_node;
  if (world_size != world)
    throw ConfigError("cluster", "the cluster has " + std::to_string(c.cluster.nodes) + " nodes x " +
                                     std::to_string(c.cluster.gpus_per_node) + " gpus = " + std::to_string(world) +
                                     " ranks but the run has " + std::to_string(world_size) +
                                     "; launch with mpirun -np " + std::to_string(world));
  const double capacity_bytes = c.cluster.gpu.memory_gb * 1e9;
  for (size_t i = 0; i < c.strategies.size(); ++i) {
    MemoryEstimate est = estimate_memory(c, c.strategies[i], world_size, dtype_bytes);
    if (backend_name == "cuda") add_cuda_runtime(est, c.strategies[i]);
    if (static_cast<double>(est.total_bytes()) > capacity_bytes)
      throw ConfigError("strategies[" + std::to_string(i) + "]",
                        "strategy '" + c.strategies[i].name + "' needs " + gb(static_cast<double>(est.total_bytes())) +
                            " per rank on backend " + backend_name + " (" + dtype_label(c, dtype_bytes) +
                            "): " + est.describe() + " > cluster.gpu.memory_gb " + num(c.cluster.gpu.memory_gb));
  }
  if (c.run.verify) {
    const MemoryEstimate ref = estimate_reference_memory(c);
    if (static_cast<double>(ref.total_bytes()) >= kReferenceLimitGb * 1e9)
      throw ConfigError("run.verify", "the single-rank FP32 reference needs " +
                                          gb(static_cast<double>(ref.total_bytes())) + " (" + ref.describe() +
                                          "), above the " + num(kReferenceLimitGb) +
                                          " GB limit; set run.verify to false");
  }
}

}  // namespace moe
