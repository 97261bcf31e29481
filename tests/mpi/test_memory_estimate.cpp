// The memory estimate against what the runs allocate: for every strategy of the shipped CPU configs
// and of the 2- and 4-rank ones with skewed synthetic routing (hot:0.9, zipf:1.2, zipf with local:0.5
// on two nodes), the estimate is at least the measured peak of every rank and at most 1.1 times it.
// ep allocates its receive buffers for the rows the estimate counts (cost/ep_receive.hpp) and grows
// them only when a part receives more, so a bound that fails shows as a peak above the estimate.
#include <catch2/catch.hpp>

#include "mpi_test_util.hpp"

using moe::testing::run_json;
using moe::testing::world_rank;
using moe::testing::world_size;
using nlohmann::json;

namespace {

void check_estimate(const std::string& path, const std::string& routing = "", const json& overrides = json::object()) {
  json cfg = moe::testing::load_json(path);
  if (!routing.empty()) cfg["workload"]["routing"] = routing;
  cfg.merge_patch(overrides);
  cfg["run"]["iterations"] = 1;
  const auto out = run_json(cfg);
  if (world_rank() != 0) return;
  REQUIRE(!out.strategies.empty());
  for (const auto& s : out.strategies) {
    const double peak = s["memory"]["peak_allocated_bytes_max"].get<double>();
    const double estimate = s["memory"]["estimate_bytes"].get<double>();
    INFO(path << " routing " << cfg["workload"]["routing"].get<std::string>() << " " << overrides.dump() << " strategy "
              << s["name"].get<std::string>() << ": estimate " << estimate << " B, peak " << peak << " B, ratio "
              << estimate / peak);
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

TEST_CASE("2 ranks: the memory estimate bounds the peak under skewed synthetic routing", "[np2]") {
  REQUIRE(world_size() == 2);
  for (const char* routing : {"hot:0.9", "zipf:1.2", "uniform"}) check_estimate("configs/cpu-2rank.json", routing);
  check_estimate("configs/cpu-2rank-overlap.json", "zipf:1.2");
}

TEST_CASE("4 ranks: the memory estimate bounds the peak within 10% (shipped config)", "[np4]") {
  REQUIRE(world_size() == 4);
  check_estimate("configs/cpu-4rank.json");
}

TEST_CASE("4 ranks: the memory estimate bounds the peak under skewed synthetic routing", "[np4]") {
  REQUIRE(world_size() == 4);
  for (const char* routing : {"hot:0.9", "zipf:1.2"}) check_estimate("configs/cpu-4rank.json", routing);
  check_estimate("configs/cpu-4rank.json", "zipf:1.2,local:0.5", {{"cluster", {{"nodes", 2}, {"gpus_per_node", 2}}}});
}

TEST_CASE("16 ranks: the memory estimate bounds the peak within 10% (shipped configs)", "[np16]") {
  REQUIRE(world_size() == 16);
  check_estimate("configs/cpu-16rank.json");
  check_estimate("configs/cpu-16rank-hot.json");
  check_estimate("configs/cpu-16rank-zipf.json");
}
