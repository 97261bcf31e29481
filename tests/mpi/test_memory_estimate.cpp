// The memory estimate against what the runs allocate: for every strategy of the shipped CPU configs
// whose routing is the gate or uniform, the estimate is at least the measured peak of every rank and at most
// 1.1 times it. (Configs with skewed synthetic routing are not covered: ep's receive buffers follow
// the routing, and the estimate assumes at most 2.25x the balanced rows (1.5x for uniform routing); see README "Memory".)
#include <catch2/catch.hpp>

#include "mpi_test_util.hpp"

using moe::testing::run_json;
using moe::testing::world_rank;
using moe::testing::world_size;
using nlohmann::json;

namespace {

void check_estimate(const std::string& path) {
  json cfg = moe::testing::load_json(path);
  REQUIRE((cfg["workload"]["routing"] == "gate" || cfg["workload"]["routing"] == "uniform"));
  cfg["run"]["iterations"] = 1;
  const auto out = run_json(cfg);
  if (world_rank() != 0) return;
  REQUIRE(!out.strategies.empty());
  for (const auto& s : out.strategies) {
    const double peak = s["memory"]["peak_allocated_bytes_max"].get<double>();
    const double estimate = s["memory"]["estimate_bytes"].get<double>();
    INFO(path << " strategy " << s["name"].get<std::string>() << ": estimate " << estimate << " B, peak " << peak
              << " B, ratio " << estimate / peak);
    CHECK(peak > 0);
    CHECK(estimate >= peak);
    CHECK(estimate <= 1.1 * peak);
  }
}

}  // namespace

TEST_CASE("2 ranks: the memory estimate bounds the peak within 10% (shipped configs)", "[np2]") {
  REQUIRE(world_size() == 2);
  check_estimate("configs/cpu-2rank.json");
  check_estimate("configs/cpu-2rank-overlap.json");
}

TEST_CASE("4 ranks: the memory estimate bounds the peak within 10% (shipped config)", "[np4]") {
  REQUIRE(world_size() == 4);
  check_estimate("configs/cpu-4rank.json");
}

TEST_CASE("16 ranks: the memory estimate bounds the peak within 10% (shipped config)", "[np16]") {
  REQUIRE(world_size() == 16);
  check_estimate("configs/cpu-16rank.json");
}
