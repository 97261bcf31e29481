// Single-rank FP32 reference forward: the oracle every strategy is verified against. Written
// directly from the model contract with plain host loops and cblas_sgemm, independent of the
// backend interfaces used by the strategies.
#pragma once
#include <vector>

#include "core/config.hpp"
#include "routing/routing_source.hpp"

namespace moe {

struct ReferenceOutputs {
  std::vector<float> prefill;               // [batch*prompt x hidden], global token order: final layer output y
  std::vector<std::vector<float>> decode;   // [steps][batch x hidden]: final layer output of each decode step
  // Load statistics (global counts): chosen[step][layer][expert], dropped likewise. step 0 = prefill.
  std::vector<std::vector<std::vector<int64_t>>> chosen;
  std::vector<std::vector<std::vector<int64_t>>> dropped;
  std::vector<std::vector<std::vector<int32_t>>> choices;  // [step][layer][tokens * k] before capacity
};

// rms(z) = z / sqrt(mean(z^2) + 1e-5) for each row of x [rows x cols] (mean in float64).
std::vector<float> rms_normalize_rows(const std::vector<float>& x, int rows, int cols);

// Runs prefill then `decode_steps` decode steps, with the load-balancing policy `lb`, choosing
// experts with `routing` (null: the gate).
ReferenceOutputs run_reference(const ModelConfig& model, const WorkloadConfig& workload, int decode_steps,
                               const LoadBalancingConfig& lb, const RoutingSource* routing = nullptr);

}  // namespace moe
