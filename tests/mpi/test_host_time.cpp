// Host time inside the phases through the real runner on the CPU backend, with synthetic routing
// (softmax and the choice on the host) and a capacity limit (ep's extra count exchange): host_ms
// reports gate host time in both strategies and dispatch host time in ep, and no phase's host time
// exceeds the phase's time (everything is host work on the CPU, so the host part is a part).
#include <catch2/catch.hpp>

#include "mpi_test_util.hpp"

using moe::testing::run_json;
using moe::testing::small_config;
using moe::testing::world_rank;
using moe::testing::world_size;
using nlohmann::json;

TEST_CASE("2 ranks: host time inside the phases, at most each phase's time", "[np2]") {
  REQUIRE(world_size() == 2);
  const json lb = {{"policy", "paper"}, {"capacity_factor", 1.25}};
  json cfg = small_config(1, 2, 8, 4, 4,
                          json::array({{{"name", "tp_pp"}, {"kind", "tp_pp"}, {"tp", 1}, {"pp", 2}, {"microbatches", 2},
                                        {"load_balancing", lb}},
                                       {{"name", "ep"}, {"kind", "ep"}, {"ep", 2}, {"chunks", 2}, {"overlap", "chunked"},
                                        {"load_balancing", lb}}}));
  cfg["workload"]["routing"] = "hot:0.9";
  const auto out = run_json(cfg);
  if (world_rank() != 0) return;
  REQUIRE(out.strategies.size() == 2);
  for (const auto& s : out.strategies) {
    const bool ep = s["kind"] == "ep";
    for (const char* step : {"prefill", "decode_step"}) {
      const json& host = s["host_ms"][step];
      const json& phases = s["phases_ms"][step];
      INFO(s["name"].get<std::string>() << " " << step << ": host " << host.dump() << " phases " << phases.dump());
      CHECK(host.size() + 1 == phases.size());   // every phase but idle
      for (const auto& [phase, h] : host.items()) {
        CHECK(h["mean"].get<double>() >= 0);
        CHECK(h["mean"].get<double>() <= h["max"].get<double>());
        CHECK(h["max"].get<double>() <= phases[phase]["max"].get<double>() + 1e-9);
        CHECK(h["mean"].get<double>() <= phases[phase]["mean"].get<double>() + 1e-9);
      }
      CHECK(host["gate"]["mean"].get<double>() > 0);
      CHECK((host["dispatch"]["mean"].get<double>() > 0) == ep);
      CHECK(host["expert"]["max"].get<double>() == 0);
      CHECK(host["attention"]["max"].get<double>() == 0);
    }
  }
}
