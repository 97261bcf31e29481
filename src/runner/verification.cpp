// Output and routing checks of a strategy against the reference (see verification.hpp).
#include "runner/verification.hpp"

#include <algorithm>
#include <cmath>

#include "backend/round16.hpp"
#include "runner/stats.hpp"

namespace moe {

double output_tolerance(DType precision) {
  switch (precision) {
    case DType::f32: return 1e-4;
    case DType::f16: return 2e-2;
    case DType::bf16: return 5e-2;
  }
  return 0;
}

double routing_gap_tolerance(DType precision) {
  switch (precision) {
    case DType::f32: return 0;
    case DType::f16: return 32 * kFp16UnitRoundoff;
    case DType::bf16: return 32 * kBf16UnitRoundoff;
  }
  return 0;
}

bool needs_replayed_reference(DType precision, const RoutingSource& source) {
  return precision != DType::f32 && source.kind() != RoutingSource::Kind::trace;
}

namespace {

// Max relative error over prefill and every decode step (NaN if any is NaN).
double max_error(const CheckedOutputs& run, const ReferenceOutputs& ref) {
  double err = max_relative_error(run.prefill, ref.prefill);
  for (size_t t = 0; t < run.decode.size(); ++t) {
    const double e = max_relative_error(run.decode[t], ref.decode.at(t));
    err = std::isnan(err) || std::isnan(e) ? NAN : std::max(err, e);
  }
  return err;
}

}  // namespace

Verification verify_outputs(const CheckedOutputs& run, const ReferenceOutputs& ref, const ReferenceOutputs* replayed,
                            DType precision) {
  const ReferenceOutputs& target = replayed ? *replayed : ref;
  Verification v;
  v.checked = true;
  v.tolerance = output_tolerance(precision);
  v.prefill_max_rel_error = max_relative_error(run.prefill, target.prefill);
  for (size_t t = 0; t < run.decode.size(); ++t)
    v.decode_max_rel_error.push_back(max_relative_error(run.decode[t], target.decode.at(t)));
  v.max_rel_error = max_error(run, target);
  // Routing against the reference's own (free-running) routing: reported; in fp32 it must match.
  v.routing_matches_reference = run.routing.chosen == ref.chosen && run.routing.dropped == ref.dropped;
  if (run.routing.has_trace) v.routing_matches_reference = v.routing_matches_reference && run.routing.trace.choices == ref.choices;
  v.compared_choices = run.routing.has_trace;
  v.passed = !std::isnan(v.max_rel_error) && v.max_rel_error <= v.tolerance;
  if (replayed) {
    const RoutingDivergence& d = replayed->divergence;
    v.replayed_routing = true;
    v.tokens_compared = d.tokens_compared;
    v.tokens_differing = d.tokens_differing;
    v.max_score_gap = d.max_score_gap;
    v.max_score_gap_probability = d.max_score_gap_abs;
    v.score_gap_tolerance = routing_gap_tolerance(precision);
    v.max_rel_error_vs_own_routing = max_error(run, ref);
    v.passed = v.passed && d.max_score_gap <= v.score_gap_tolerance;
  }
  return v;
}

}  // namespace moe
