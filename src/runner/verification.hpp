// Verification of a strategy's checked pass against the single-rank reference: tolerances per
// precision, the teacher-forced reference for 16-bit runs, and the `verification` results section.
#pragma once
#include <vector>

#include "backend/backend.hpp"
#include "model/reference.hpp"
#include "runner/checked_routing.hpp"
#include "runner/measurement.hpp"

namespace moe {

// Largest accepted max-relative error of the outputs: 1e-4 in fp32, 2e-2 in fp16, 5e-2 in bf16
// (docs/verification.md has the error estimate behind them).
double output_tolerance(DType precision);
// Largest accepted relative score gap (RoutingDivergence::max_score_gap) of a token whose experts
// differ from the reference's own choice: 32 unit roundoffs of the format (0 in fp32: none may differ).
double routing_gap_tolerance(DType precision);

// Whether a run in `precision` routed by `source` is verified against a teacher-forced reference
// (replaying its recorded choices): 16-bit runs whose choice depends on the gate's scores.
bool needs_replayed_reference(DType precision, const RoutingSource& source);

// The outputs of a checked pass on world rank 0.
struct CheckedOutputs {
  const std::vector<float>& prefill;
  const std::vector<std::vector<float>>& decode;
  const CheckedRouting& routing;
};

// The verification against `ref`, the reference of the run's own routing. With `replayed` (the
// teacher-forced reference), outputs are compared with it, and the run passes only if the tokens
// routed differently from the reference's own choice are near-ties.
Verification verify_outputs(const CheckedOutputs& run, const ReferenceOutputs& ref, const ReferenceOutputs* replayed,
                            DType precision);

}  // namespace moe
