// Single-rank FP32 reference forward: the oracle every strategy is verified against. Written
// directly from the model contract with plain host loops and cblas_sgemm, independent of the
// backend interfaces used by the strategies.
#pragma once
#include <vector>

#include "core/config.hpp"
#include "routing/routing_source.hpp"

namespace moe {

// How a replayed routing compares with the one the reference chooses itself from its fp32 gate, with
// the same history (earlier layers and steps under the replayed routing). A token differs when its
// set of k experts differs. Its score gap is the reference's k-th best score p_e * m_e minus the
// lowest score among the replayed experts, divided by the token's best score: 0 at an exact tie,
// near 0 at a near-tie, of order 1 for a choice no rounding explains.
struct RoutingDivergence {
  int64_t tokens_compared = 0;     // tokens x layers
  int64_t tokens_differing = 0;
  double max_score_gap = 0;        // relative, over the differing tokens
  double max_score_gap_abs = 0;    // the same gap in probability units
};

struct ReferenceOutputs {
  std::vector<float> prefill;               // [batch*prompt x hidden], global token order: final layer output y
  std::vector<std::vector<float>> decode;   // [steps][batch x hidden]: final layer output of each decode step
  // Load statistics (global counts): chosen[step][layer][expert], dropped likewise. step 0 = prefill.
  std::vector<std::vector<std::vector<int64_t>>> chosen;
  std::vector<std::vector<std::vector<int64_t>>> dropped;
  std::vector<std::vector<std::vector<int32_t>>> choices;  // [step][layer][tokens * k] before capacity
  RoutingDivergence divergence;  // filled by run_reference_replayed
};

// rms(z) = z / sqrt(mean(z^2) + 1e-5) for each row of x [rows x cols] (mean in float64).
std::vector<float> rms_normalize_rows(const std::vector<float>& x, int rows, int cols);

// Runs prefill then `decode_steps` decode steps, with the load-balancing policy `lb`, choosing
// experts with `routing` (null: the gate).
ReferenceOutputs run_reference(const ModelConfig& model, const WorkloadConfig& workload, int decode_steps,
                               const LoadBalancingConfig& lb, const RoutingSource* routing = nullptr);

// Teacher-forced reference: every layer routes as `replay` says (a strategy's recorded choices),
// and `divergence` compares that, token by token, with what `own` (the workload's routing source)
// picks from the reference's fp32 gate. For runs in 16-bit formats, whose gate may order a near-tie
// differently from fp32.
ReferenceOutputs run_reference_replayed(const ModelConfig& model, const WorkloadConfig& workload, int decode_steps,
                                        const LoadBalancingConfig& lb, const RoutingSource& replay,
                                        const RoutingSource& own);

}  // namespace moe
