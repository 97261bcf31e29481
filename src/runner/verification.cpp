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

nlohmann::ordered_json verify_outputs(const CheckedOutputs& run, const ReferenceOutputs& ref,
                                      const ReferenceOutputs* replayed, DType precision) {
  const ReferenceOutputs& target = replayed ? *replayed : ref;
  const double tol = output_tolerance(precision);
  const double prefill_err = max_relative_error(run.prefill, target.prefill);
  nlohmann::ordered_json decode_errors = nlohmann::ordered_json::array();
  for (size_t t = 0; t < run.decode.size(); ++t) decode_errors.push_back(max_relative_error(run.decode[t], target.decode.at(t)));
  const double err = max_error(run, target);
  // Routing against the reference's own (free-running) routing: reported; in fp32 it must match.
  bool routing_matches = run.routing.chosen == ref.chosen && run.routing.dropped == ref.dropped;
  if (run.routing.has_trace) routing_matches = routing_matches && run.routing.trace.choices == ref.choices;
  bool passed = !std::isnan(err) && err <= tol;
  nlohmann::ordered_json j = {{"checked", true}, {"max_rel_error", std::isnan(err) ? -1.0 : err}, {"tolerance", tol},
                              {"prefill_max_rel_error", prefill_err}, {"decode_max_rel_error", decode_errors},
                              {"routing_matches_reference", routing_matches},
                              {"routing_compared", run.routing.has_trace ? "every token's choice and the counts"
                                                                          : "counts per step, layer and expert"}};
  if (replayed) {
    const RoutingDivergence& d = replayed->divergence;
    const double gap_tol = routing_gap_tolerance(precision);
    passed = passed && d.max_score_gap <= gap_tol;
    j["reference"] = "teacher-forced: the fp32 reference replays the strategy's routing";
    j["routing_divergence"] = {{"tokens_compared", d.tokens_compared},
                               {"tokens_differing", d.tokens_differing},
                               {"max_score_gap", d.max_score_gap},
                               {"max_score_gap_probability", d.max_score_gap_abs},
                               {"score_gap_tolerance", gap_tol}};
    // What a comparison with the reference's own routing would have seen (not a pass criterion).
    const double own_err = max_error(run, ref);
    j["max_rel_error_vs_own_routing"] = std::isnan(own_err) ? -1.0 : own_err;
  } else {
    j["reference"] = "the fp32 reference with its own routing";
  }
  j["passed"] = passed;
  return j;
}

}  // namespace moe
