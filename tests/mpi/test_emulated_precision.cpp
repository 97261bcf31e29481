// The CPU backend's emulated 16-bit mode (run.emulate_dtype) end to end: every strategy passes
// against the teacher-forced reference, although some tokens route differently from the fp32
// reference's own choice, and against that own routing the same outputs would fail the tolerance.
#include <catch2/catch.hpp>

#include "mpi_test_util.hpp"

using moe::testing::run_json;
using moe::testing::world_rank;
using moe::testing::world_size;
using nlohmann::json;

namespace {

// Runs `cfg` in `dtype` emulated on the CPU and checks every strategy on rank 0.
void check_emulated(json cfg, const std::string& dtype, double tolerance) {
  cfg["model"]["dtype"] = dtype;
  cfg["run"]["emulate_dtype"] = true;
  cfg["run"]["iterations"] = 1;
  const auto out = run_json(cfg);
  CHECK(out.all_verified);
  if (world_rank() != 0) return;
  REQUIRE(!out.strategies.empty());
  for (const auto& s : out.strategies) {
    INFO("strategy " << s["name"].get<std::string>() << " in " << dtype);
    const json& v = s["verification"];
    CHECK(v["passed"].get<bool>());
    CHECK(v["tolerance"].get<double>() == tolerance);
    CHECK(v["max_rel_error"].get<double>() <= tolerance);
    CHECK(v["max_rel_error"].get<double>() > 1e-4);  // rounding happened: not an fp32 run
    REQUIRE(v.contains("routing_divergence"));
    const json& d = v["routing_divergence"];
    // Near-ties ordered differently by the 16-bit gate: present, and small.
    CHECK(d["tokens_differing"].get<int64_t>() > 0);
    CHECK(d["tokens_differing"].get<int64_t>() < d["tokens_compared"].get<int64_t>() / 20);
    CHECK(d["max_score_gap"].get<double>() > 0);
    CHECK(d["max_score_gap"].get<double>() <= d["score_gap_tolerance"].get<double>());
    // Without the replayed routing the comparison fails.
    CHECK(v["max_rel_error_vs_own_routing"].get<double>() > tolerance);
    CHECK_FALSE(v["routing_matches_reference"].get<bool>());
  }
}

}  // namespace

TEST_CASE("2 ranks: emulated fp16 and bf16 pass against the teacher-forced reference", "[np2]") {
  REQUIRE(world_size() == 2);
  const json cfg = moe::testing::load_json("configs/cpu-2rank.json");
  check_emulated(cfg, "fp16", 2e-2);
  check_emulated(cfg, "bf16", 5e-2);
}

TEST_CASE("2 ranks: without emulation the CPU run is fp32 against the reference's own routing", "[np2]") {
  REQUIRE(world_size() == 2);
  json cfg = moe::testing::load_json("configs/cpu-2rank.json");
  cfg["run"]["iterations"] = 1;
  cfg["workload"]["decode_steps"] = 2;
  const auto out = run_json(cfg);
  CHECK(out.all_verified);
  if (world_rank() != 0) return;
  for (const auto& s : out.strategies) {
    INFO("strategy " << s["name"].get<std::string>());
    CHECK(s["verification"]["tolerance"].get<double>() == 1e-4);
    CHECK_FALSE(s["verification"].contains("routing_divergence"));
    CHECK(s["verification"]["routing_matches_reference"].get<bool>());
  }
}

TEST_CASE("4 ranks: emulated bf16 with tp 2 x pp 2 and ep 4 (balancing on)", "[np4]") {
  REQUIRE(world_size() == 4);
  check_emulated(moe::testing::load_json("configs/cpu-4rank.json"), "bf16", 5e-2);
}
