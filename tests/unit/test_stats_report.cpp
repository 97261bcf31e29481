// Summary statistics, load measures, the verification error measure, traffic classification, npy
// encoding and the results document's required fields.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#include "core/atomic_file.hpp"
#include "report/results.hpp"
#include "runner/runner.hpp"
#include "runner/stats.hpp"
#include "topology/topology.hpp"

using namespace moe;

TEST_CASE("summaries use interpolated percentiles", "[stats]") {
  const Summary s = summarize({4, 1, 3, 2});
  CHECK(s.mean == Approx(2.5));
  CHECK(s.p50 == Approx(2.5));
  CHECK(s.p99 == Approx(3.97));
  CHECK(s.min == 1);
  CHECK(s.max == 4);
  CHECK(summarize({}).count == 0);
}

TEST_CASE("load balancedness and coefficient of variation", "[stats]") {
  CHECK(summarize_load({5, 5, 5, 5}).balancedness == Approx(1.0));
  CHECK(summarize_load({5, 5, 5, 5}).cv == Approx(0.0));
  const LoadSummary s = summarize_load({0, 2, 4, 10});
  CHECK(s.balancedness == Approx(4.0 / 10.0));
  CHECK(s.cv == Approx(std::sqrt((16.0 + 4.0 + 0.0 + 36.0) / 4.0) / 4.0));
}

TEST_CASE("max relative error is normwise and catches NaN", "[stats]") {
  CHECK(max_relative_error({1, 2, -4}, {1, 2, -4}) == 0);
  CHECK(max_relative_error({1, 2.5f, -4}, {1, 2, -4}) == Approx(0.5 / 4));
  CHECK(std::isnan(max_relative_error({NAN, 1}, {1, 1})));
  CHECK(std::isinf(max_relative_error({1}, {0})));
  CHECK_THROWS(max_relative_error({1, 2}, {1}));
}

TEST_CASE("traffic is classified by link and the busiest NIC is rail-aligned", "[topology]") {
  const Topology topo(2, 4);  // ranks 0-3 node 0, 4-7 node 1
  CHECK(topo.link(1, 1) == LinkClass::self);
  CHECK(topo.link(1, 3) == LinkClass::intra_node);
  CHECK(topo.link(3, 4) == LinkClass::inter_node);
  std::vector<std::vector<int64_t>> bytes(8, std::vector<int64_t>(8, 0));
  bytes[0][1] = 100;  // intra
  bytes[0][0] = 999;  // self: not traffic
  bytes[0][4] = 10;   // inter via node 0 NIC 0
  bytes[2][5] = 20;   // inter via node 0 NIC 0 with 2 NICs (gpu 2 % 2 = 0)
  bytes[1][6] = 7;    // inter via node 0 NIC 1
  const TrafficSummary s = summarize_traffic(topo, 2, bytes);
  CHECK(s.intra_node_bytes == 100);
  CHECK(s.inter_node_bytes == 37);
  CHECK(s.max_intra_link_bytes == 100);
  CHECK(s.max_inter_link_bytes == 30);
}

TEST_CASE("npy files carry a 64-byte aligned header and the raw float32 data", "[report]") {
  const std::string path = "/tmp/moe-bench-test.npy";
  write_npy(path, {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f}, 2, 3);
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(bytes.substr(0, 6) == "\x93NUMPY");
  const size_t hlen = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
  CHECK((10 + hlen) % 64 == 0);
  CHECK(bytes.find("'shape': (2, 3)") != std::string::npos);
  CHECK(bytes.size() == 10 + hlen + 6 * 4);
  float last = 0;
  std::memcpy(&last, bytes.data() + bytes.size() - 4, 4);
  CHECK(last == 6.0f);
  CHECK_THROWS(write_npy(path, {1.0f}, 2, 3));
  CHECK_THROWS_WITH(write_file_atomic("/nonexistent-dir/x.json", "{}"), Catch::Contains("/nonexistent-dir/x.json"));
}

TEST_CASE("comparison ratios: decode TPS and how many times lower the TPOT is", "[report]") {
  nlohmann::ordered_json s = nlohmann::ordered_json::array();
  s.push_back({{"name", "baseline"}, {"decode", {{"tokens_per_s", 100.0}, {"tpot_ms", {{"mean", 8.0}}}}},
               {"prefill", {{"tokens_per_s", 50.0}}}});
  s.push_back({{"name", "proposed"}, {"decode", {{"tokens_per_s", 400.0}, {"tpot_ms", {{"mean", 2.0}}}}},
               {"prefill", {{"tokens_per_s", 75.0}}}});
  const auto c = compare_strategies(s);
  REQUIRE(c.size() == 1);
  CHECK(c[0]["name"] == "proposed");
  CHECK(c[0]["vs"] == "baseline");
  CHECK(c[0]["tps_ratio"].get<double>() == Approx(4.0));
  CHECK(c[0]["tpot_ratio"].get<double>() == Approx(4.0));
  CHECK(c[0]["prefill_tps_ratio"].get<double>() == Approx(1.5));
}
