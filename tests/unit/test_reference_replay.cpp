// Teacher-forced reference (run_reference_replayed): replaying the reference's own choices changes
// nothing and finds no divergence; replaying a wrong routing is found, with score gaps far above
// what 16-bit rounding explains, so verification of a routing bug still fails.
#include <catch2/catch.hpp>

#include <fstream>

#include "model/reference.hpp"
#include "routing/routing_source.hpp"
#include "runner/verification.hpp"

using namespace moe;

namespace {

Config small_gate_config() {
  std::ifstream in(std::string(MOE_SOURCE_DIR) + "/configs/cpu-2rank.json");
  nlohmann::json j = nlohmann::json::parse(in);
  j["model"]["layers"] = 2;
  j["model"]["hidden"] = 64;
  j["model"]["ffn_hidden"] = 128;
  j["workload"]["batch_sequences"] = 4;
  j["workload"]["prompt_tokens"] = 16;
  j["workload"]["decode_steps"] = 2;
  return parse_config(j);
}

RoutingTrace trace_of(const Config& c, const ReferenceOutputs& ref) {
  RoutingTrace t;
  t.num_layers = c.model.layers;
  t.num_experts = c.model.experts;
  t.top_k = c.model.top_k;
  t.choices = ref.choices;
  for (const auto& step : ref.choices) t.tokens_per_step.push_back(int64_t(step.at(0).size()) / c.model.top_k);
  t.source = "test";
  return t;
}

}  // namespace

TEST_CASE("replaying the reference's own routing reproduces it with no divergence", "[reference][replay]") {
  const Config c = small_gate_config();
  const auto gate = RoutingSource::from_config(c);
  const LoadBalancingConfig lb;
  const ReferenceOutputs own = run_reference(c.model, c.workload, c.workload.decode_steps, lb, gate.get());
  const auto replay = RoutingSource::from_trace(c, trace_of(c, own));
  const ReferenceOutputs r = run_reference_replayed(c.model, c.workload, c.workload.decode_steps, lb, *replay, *gate);
  CHECK(r.prefill == own.prefill);
  CHECK(r.decode == own.decode);
  CHECK(r.divergence.tokens_compared ==
        int64_t(c.model.layers) * c.workload.batch_sequences * (c.workload.prompt_tokens + c.workload.decode_steps));
  CHECK(r.divergence.tokens_differing == 0);
  CHECK(r.divergence.max_score_gap == 0);
}

TEST_CASE("a wrong replayed routing is a divergence beyond the 16-bit gap tolerance", "[reference][replay]") {
  const Config c = small_gate_config();
  const auto gate = RoutingSource::from_config(c);
  const LoadBalancingConfig lb;
  const ReferenceOutputs own = run_reference(c.model, c.workload, c.workload.decode_steps, lb, gate.get());
  RoutingTrace wrong = trace_of(c, own);
  // A routing bug: layer 1 of prefill sends every choice to the next expert (still k distinct ones).
  for (int32_t& e : wrong.choices[0][1]) e = (e + 1) % c.model.experts;
  const auto replay = RoutingSource::from_trace(c, wrong);
  const ReferenceOutputs r = run_reference_replayed(c.model, c.workload, c.workload.decode_steps, lb, *replay, *gate);
  CHECK(r.divergence.tokens_differing > 0);
  CHECK(r.divergence.max_score_gap > routing_gap_tolerance(DType::bf16));
  CHECK(r.divergence.max_score_gap <= 1.0);

  // The outputs of that routing match the teacher-forced reference exactly, yet verification fails
  // on the routing gap; against the reference's own routing they differ by O(1).
  CheckedRouting routing;
  const CheckedOutputs out{r.prefill, r.decode, routing};
  const Verification v = verify_outputs(out, own, &r, DType::bf16);
  CHECK(v.max_rel_error == 0);
  CHECK(v.replayed_routing);
  CHECK(v.tokens_differing == r.divergence.tokens_differing);
  CHECK(v.max_score_gap == r.divergence.max_score_gap);
  CHECK(v.max_rel_error_vs_own_routing > output_tolerance(DType::bf16));
  CHECK_FALSE(v.passed);
  // The same outputs under the reference's own routing pass.
  const CheckedOutputs same{own.prefill, own.decode, routing};
  ReferenceOutputs replay_own = own;
  CHECK(verify_outputs(same, own, &replay_own, DType::bf16).passed);
}

TEST_CASE("tolerances follow the precision", "[verification]") {
  CHECK(output_tolerance(DType::f32) == 1e-4);
  CHECK(output_tolerance(DType::f16) == 2e-2);
  CHECK(output_tolerance(DType::bf16) == 5e-2);
  CHECK(routing_gap_tolerance(DType::f32) == 0);
  CHECK(routing_gap_tolerance(DType::f16) == Approx(32.0 / 2048));
  CHECK(routing_gap_tolerance(DType::bf16) == Approx(32.0 / 256));
}
