// The results entry of a measured strategy (see strategy_results.hpp).
#include "report/strategy_results.hpp"

#include <cmath>

#include "cost/memory.hpp"
#include "report/efficiency.hpp"
#include "report/load_report.hpp"
#include "report/traffic_report.hpp"
#include "runner/stats.hpp"
#include "topology/topology.hpp"

namespace moe {
namespace {

using ojson = nlohmann::ordered_json;

ojson phases_json(const PhaseStats& p) {
  ojson j;
  for (int i = 0; i <= kNumPhases; ++i) {
    const char* name = i < kNumPhases ? phase_name(static_cast<Phase>(i)) : "idle";
    j[name] = {{"max", p.max[i]}, {"mean", p.mean[i]}};
  }
  return j;
}

ojson host_json(const HostStats& h) {
  ojson j;
  for (int i = 0; i < kNumPhases; ++i) j[phase_name(static_cast<Phase>(i))] = {{"max", h.max[i]}, {"mean", h.mean[i]}};
  return j;
}

ojson overlap_json(const OverlapStats& o) {
  return {{"comm_ms", o.comm_ms}, {"exposed_comm_ms", o.exposed_comm_ms}, {"efficiency", o.efficiency},
          {"rank", o.rank}, {"mean_efficiency", o.mean_efficiency}};
}

ojson verification_json(const Verification& v) {
  if (!v.checked) return {{"checked", false}};
  ojson j = {{"checked", true}, {"max_rel_error", std::isnan(v.max_rel_error) ? -1.0 : v.max_rel_error},
          {"tolerance", v.tolerance}, {"prefill_max_rel_error", v.prefill_max_rel_error},
          {"decode_max_rel_error", v.decode_max_rel_error},
          {"routing_matches_reference", v.routing_matches_reference},
          {"routing_compared", v.compared_choices ? "every token's choice and the counts" : "counts per step, layer and expert"}};
  if (v.replayed_routing) {
    j["reference"] = "teacher-forced: the fp32 reference replays the strategy's routing";
    j["routing_divergence"] = {{"tokens_compared", v.tokens_compared}, {"tokens_differing", v.tokens_differing},
                               {"max_score_gap", v.max_score_gap}, {"max_score_gap_probability", v.max_score_gap_probability},
                               {"score_gap_tolerance", v.score_gap_tolerance}};
    j["max_rel_error_vs_own_routing"] = std::isnan(v.max_rel_error_vs_own_routing) ? -1.0 : v.max_rel_error_vs_own_routing;
  } else {
    j["reference"] = "the fp32 reference with its own routing";
  }
  j["passed"] = v.passed;
  return j;
}

ojson memory_json(const StrategyMeasurement& m, const MemoryEstimate& est) {
  return {{"peak_allocated_bytes_max", m.peak_allocated_bytes_max}, {"peak_allocated_bytes_mean", m.peak_allocated_bytes_mean},
          {"estimate_bytes", est.total_bytes()}, {"estimate_weights_bytes", est.weights_bytes},
          {"estimate_kv_cache_bytes", est.kv_cache_bytes}, {"estimate_activations_bytes", est.activations_bytes},
          {"estimate_comm_buffers_bytes", est.comm_buffers_bytes}, {"estimate_runtime_bytes", est.runtime_bytes}};
}

}  // namespace

ojson strategy_results(const Config& config, const RoutingSource& routing, const StrategyMeasurement& m) {
  const Topology topo = Topology::from_config(config.cluster);
  const int iters = config.run.iterations;
  const int steps = config.workload.decode_steps;
  const Summary prefill_s = summarize(m.prefill_ms);
  const Summary tpot = summarize(m.decode_ms);
  const int64_t prefill_tokens = int64_t(config.workload.batch_sequences) * config.workload.prompt_tokens;
  const double decode_total_s = [&] { double s = 0; for (double v : m.decode_ms) s += v; return s / 1e3; }();
  const double flops_per_iter = double(m.flops) / iters;
  MemoryEstimate est = estimate_memory(config, m.spec, m.world_size, m.dtype_bytes);
  if (m.cuda_runtime) add_cuda_runtime(est, m.spec);

  ojson r;
  r["name"] = m.spec.name;
  r["kind"] = m.kind;
  r["layout"] = m.layout;
  r["prefill"] = {{"tokens", prefill_tokens},
                  {"time_s", {{"mean", prefill_s.mean / 1e3}, {"min", prefill_s.min / 1e3}, {"max", prefill_s.max / 1e3}}},
                  {"tokens_per_s", prefill_s.mean > 0 ? prefill_tokens / (prefill_s.mean / 1e3) : 0}};
  r["decode"] = {{"batch", config.workload.batch_sequences},
                 {"steps", steps},
                 {"tpot_ms", {{"mean", tpot.mean}, {"p50", tpot.p50}, {"p99", tpot.p99}}},
                 {"tokens_per_s", decode_total_s > 0 ? double(config.workload.batch_sequences) * steps * iters / decode_total_s : 0}};
  r["phases_ms"] = {{"prefill", phases_json(m.prefill_phases)}, {"decode_step", phases_json(m.decode_phases)}};
  r["host_ms"] = {{"prefill", host_json(m.prefill_host)}, {"decode_step", host_json(m.decode_host)}};
  r["overlap"] = {{"mode", m.spec.overlap},
                  {"prefill", overlap_json(m.prefill_overlap)},
                  {"decode_step", overlap_json(m.decode_overlap)}};
  TrafficPrediction prediction;
  if (m.placement) {
    prediction.placement = &*m.placement;
    prediction.planned = m.planned;
    prediction.planned_spec = m.planned_spec;
    prediction.bytes_per_row = int64_t(config.model.hidden) * m.dtype_bytes;
  }
  r["traffic"] = traffic_json(config, topo, m.traffic_bytes, iters, prediction, m.routing);
  r["load"] = load_json(m.routing, m.spec.load_balancing);
  r["routing"] = routing_json(routing, m.routing, m.choices_match_reference);
  r["memory"] = memory_json(m, est);
  r["efficiency"] = efficiency_json(config, m.spec, topo, m.world_size, m.dtype_bytes, m.rank_placement ? *m.rank_placement : Placement{},
                                    prefill_s.mean / 1e3, tpot.mean / 1e3, flops_per_iter,
                                    kept_assignments(m.routing.chosen_by_source, m.routing.dropped_by_source));
  r["verification"] = verification_json(m.verification);
  return r;
}

ojson strategies_results(const Config& config, const RoutingSource& routing, const std::vector<StrategyMeasurement>& measurements) {
  ojson out = ojson::array();
  for (const StrategyMeasurement& m : measurements) out.push_back(strategy_results(config, routing, m));
  return out;
}

}  // namespace moe
