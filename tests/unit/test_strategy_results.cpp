// A measured strategy's results entry: the keys in schema order, times per step from the step
// times, the host part of each phase, and the verification section (not checked; NaN errors written as -1, which fails).
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "report/strategy_results.hpp"
#include "routing/routing_source.hpp"

using namespace moe;

namespace {

Config cpu_4rank() {
  std::ifstream in(std::string(MOE_SOURCE_DIR) + "/configs/cpu-4rank.json");
  Config c = parse_config(nlohmann::json::parse(in));
  c.run.iterations = 1;
  return c;
}

// A tp_pp measurement with one prefill and one decode time and no traffic or routing records.
StrategyMeasurement tp_pp_measurement(const Config& c) {
  StrategyMeasurement m;
  for (const StrategyConfig& s : c.strategies)
    if (s.kind == "tp_pp") m.spec = s;
  m.kind = "tp_pp";
  m.layout = {{"tp", m.spec.tp}};
  m.world_size = c.cluster.nodes * c.cluster.gpus_per_node;
  m.prefill_ms = {200};
  m.decode_ms = std::vector<double>(c.workload.decode_steps, 10);
  m.traffic_bytes.assign(m.world_size, std::vector<int64_t>(m.world_size, 0));
  return m;
}

}  // namespace

TEST_CASE("strategy results: schema order, rates from the step times, verification", "[report]") {
  const Config c = cpu_4rank();
  const auto routing = RoutingSource::from_config(c);
  StrategyMeasurement m = tp_pp_measurement(c);
  nlohmann::ordered_json r = strategy_results(c, *routing, m);
  std::vector<std::string> keys;
  for (const auto& item : r.items()) keys.push_back(item.key());
  CHECK(keys == std::vector<std::string>{"name", "kind", "layout", "prefill", "decode", "phases_ms", "host_ms", "overlap",
                                         "traffic", "load", "routing", "memory", "efficiency", "verification"});
  CHECK(r["name"] == m.spec.name);
  CHECK(r["decode"]["tpot_ms"]["mean"].get<double>() == Approx(10));
  CHECK(r["decode"]["tokens_per_s"].get<double>() == Approx(c.workload.batch_sequences / 0.010));
  CHECK(r["prefill"]["time_s"]["mean"].get<double>() == Approx(0.2));
  CHECK(r["phases_ms"]["decode_step"].contains("idle"));
  // host_ms: the same phases without idle, {max, mean} per step kind.
  m.decode_host.max[static_cast<int>(Phase::dispatch)] = 0.5;
  m.decode_host.mean[static_cast<int>(Phase::dispatch)] = 0.25;
  r = strategy_results(c, *routing, m);
  CHECK(r["host_ms"]["decode_step"].size() == size_t(kNumPhases));
  CHECK(!r["host_ms"]["prefill"].contains("idle"));
  CHECK(r["host_ms"]["decode_step"]["dispatch"]["max"].get<double>() == 0.5);
  CHECK(r["host_ms"]["decode_step"]["dispatch"]["mean"].get<double>() == 0.25);
  CHECK(r["host_ms"]["prefill"]["gate"]["max"].get<double>() == 0);
  CHECK(r["verification"] == nlohmann::ordered_json{{"checked", false}});

  m.verification.checked = true;
  m.verification.max_rel_error = NAN;
  m.verification.passed = false;
  r = strategy_results(c, *routing, m);
  CHECK(r["verification"]["max_rel_error"] == -1.0);
  CHECK(r["verification"]["passed"] == false);
  CHECK(r["verification"]["routing_compared"] == "counts per step, layer and expert");
}
