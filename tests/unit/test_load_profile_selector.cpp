// place --load-profile FILE#strategy: the named strategy's counted load, errors naming what is wrong.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>

#include "expect_config_error.hpp"
#include "placement/load_profile.hpp"
#include "topology/topology.hpp"

using namespace moe;
using json = nlohmann::json;
using moe::testing::expect_config_error;

TEST_CASE("a load profile from a named strategy of a results file", "[placement]") {
  const Topology topo(1, 4);
  const json results = json::parse(R"({"strategies": [
      {"name": "baseline", "kind": "tp_pp", "load": {"layers": [{"tokens_per_expert": [4, 4, 4]}]}},
      {"name": "ep-rr", "kind": "ep", "load": {"layers": [{"tokens_per_expert": [8, 4, 0]}]}},
      {"name": "no-load", "kind": "ep"}]})");
  CHECK(profile_from_results(results, 1, 3, topo, "run.json").tokens[0][0] == std::vector<double>{2, 1, 0});
  CHECK(profile_from_results(results, 1, 3, topo, "run.json", "baseline").tokens[0][0] == std::vector<double>{1, 1, 1});
  expect_config_error([&] { profile_from_results(results, 1, 3, topo, "run.json", "proposed"); }, "--load-profile",
                      "no strategy named 'proposed' in 'run.json' (it has baseline, ep-rr, no-load)");
  expect_config_error([&] { profile_from_results(results, 1, 3, topo, "run.json", "no-load"); }, "strategies[2].load.layers",
                      "is missing");

  const std::string path = "/tmp/moe-bench-test-load-profile.json";
  std::ofstream(path) << results.dump();
  CHECK(profile_from_results_file(path + "#baseline", 1, 3, topo).tokens[0][3] == std::vector<double>{1, 1, 1});
  CHECK(profile_from_results_file(path, 1, 3, topo).tokens[0][3] == std::vector<double>{2, 1, 0});
  expect_config_error([&] { profile_from_results_file(path + "#", 1, 3, topo); }, "--load-profile",
                      "a strategy name must follow '#'");
  std::remove(path.c_str());
}
