// ep with expert_tp > 1 (each expert split over a group of ranks, W1 columns and W2 rows, partial
// outputs summed at the token's rank) reproduces the single-rank reference at 4 ranks (ep 2 x
// expert_tp 2), 8 ranks (ep 4 x 2, replicas when E < ep) and 16 ranks (ep 8 x 2), with placement
// algorithms, balancing, capacity drops and every overlap mode; its layout, load and FLOP counters
// say what it ran.
#include <catch2/catch.hpp>

#include "mpi_test_util.hpp"
#include "sim/hardware.hpp"
#include "sim/simulate.hpp"

using moe::testing::run_json;
using moe::testing::small_config;
using moe::testing::world_rank;
using moe::testing::world_size;
using nlohmann::json;

namespace {

json hybrid(const std::string& name, int ep, int expert_tp, const std::string& overlap, int chunks, const json& lb) {
  return {{"name", name}, {"kind", "ep"}, {"ep", ep}, {"expert_tp", expert_tp}, {"overlap", overlap},
          {"chunks", chunks}, {"load_balancing", lb}};
}

// Every overlap mode, balancing on, and (capacity > 0) drops.
json every_mode(int ep, int expert_tp, double capacity) {
  const json lb = moe::testing::balancing("paper", capacity);
  return json::array({hybrid("none", ep, expert_tp, "none", 1, lb), hybrid("none-chunks", ep, expert_tp, "none", 3, lb),
                      hybrid("chunked", ep, expert_tp, "chunked", 2, lb), hybrid("two_batch", ep, expert_tp, "two_batch", 1, lb)});
}

// On rank 0: every strategy passed verification with the reference's routing; hybrids report their
// groups (both members of a group hold the same experts), count every assignment once per expert,
// and their FLOP counters equal the cost model's.
void check_verified(const moe::testing::RunResults& out, size_t n, int expert_tp, const json& cfg) {
  CHECK(out.all_verified);
  if (world_rank() != 0) return;
  REQUIRE(out.strategies.size() == n);
  const int64_t per_layer = cfg["workload"]["batch_sequences"].get<int64_t>() *
                            (cfg["workload"]["prompt_tokens"].get<int64_t>() + cfg["workload"]["decode_steps"].get<int64_t>()) *
                            cfg["model"]["top_k"].get<int64_t>();
  for (const auto& s : out.strategies) {
    INFO("strategy " << s["name"].get<std::string>());
    CHECK(s["verification"]["passed"].get<bool>());
    CHECK(s["verification"]["max_rel_error"].get<double>() <= 1e-4);
    CHECK(s["verification"]["routing_matches_reference"].get<bool>());
    CHECK(s["efficiency"]["flops_counter_vs_cost_model"].get<double>() == Approx(1.0).epsilon(1e-12));
    if (s["kind"] != "ep" || s["layout"]["expert_tp"] != expert_tp) continue;
    const auto& layout = s["layout"];
    CHECK(layout["expert_shard_ffn_columns"] == cfg["model"]["ffn_hidden"].get<int>() / expert_tp);
    CHECK(layout["sequences_per_rank"] == cfg["workload"]["batch_sequences"].get<int>() / world_size());
    for (const auto& layer : layout["experts_of_rank"]) {
      REQUIRE(layer.size() == static_cast<size_t>(world_size()));
      for (int r = 0; r < world_size(); ++r) CHECK(layer[r] == layer[r - r % expert_tp]);
    }
    for (const auto& l : s["load"]["layers"]) {
      int64_t sum = 0;
      for (const auto& c : l["tokens_per_expert"]) sum += c.get<int64_t>();
      CHECK(sum == per_layer);
    }
  }
}

}  // namespace

TEST_CASE("expert_tp, 4 ranks: ep 2 x expert_tp 2 in every overlap mode, attention on and off", "[np4]") {
  REQUIRE(world_size() == 4);
  json strategies = every_mode(2, 2, 0);
  strategies.push_back({{"name", "ep4"}, {"kind", "ep"}, {"ep", 4}});
  json cfg = small_config(1, 4, 4, 4, 8, strategies);
  SECTION("attention on") {
    const moe::testing::RunResults out = run_json(cfg);
    check_verified(out, strategies.size(), 2, cfg);
    if (world_rank() == 0) {
      // Dispatch sends every assignment to both members of its expert's group, and the partials
      // come back: more rows than whole experts move for the same routing.
      const auto bytes = [](const json& s) {
        return s["traffic"]["intra_node_bytes"].get<int64_t>() + s["traffic"]["inter_node_bytes"].get<int64_t>();
      };
      CHECK(bytes(out.strategies[0]) > bytes(out.strategies.back()));
      // A shard-level placement has no whole-expert traffic prediction; whole experts keep theirs.
      CHECK_FALSE(out.strategies[0]["traffic"].contains("predicted_from_plan"));
      CHECK(out.strategies.back()["traffic"].contains("predicted_from_plan"));
    }
  }
  SECTION("attention off") {
    cfg["model"]["attention"] = false;
    check_verified(run_json(cfg), strategies.size(), 2, cfg);
  }
}

TEST_CASE("expert_tp, 4 ranks: capacity drops and load- and topology-aware placement on 2 nodes", "[np4]") {
  REQUIRE(world_size() == 4);
  json strategies = every_mode(2, 2, 1.0);
  json topo = hybrid("topology_aware", 2, 2, "chunked", 2, moe::testing::balancing("none"));
  topo["placement"] = "topology_aware";
  topo["placement_profile"] = "zipf:1.2,local:0.5";
  strategies.push_back(topo);
  json balanced = hybrid("balanced", 2, 2, "none", 2, moe::testing::balancing("paper"));
  balanced["placement"] = "balanced";
  strategies.push_back(balanced);
  json cfg = small_config(2, 2, 8, 4, 8, strategies);
  cfg["workload"]["routing"] = "zipf:1.2,local:0.5";
  const moe::testing::RunResults out = run_json(cfg);
  check_verified(out, strategies.size(), 2, cfg);
  if (world_rank() == 0) CHECK(out.strategies[0]["load"]["dropped_total"].get<int64_t>() > 0);
}

TEST_CASE("expert_tp, 4 ranks: run and simulate report the same layout, placement included", "[np4]") {
  REQUIRE(world_size() == 4);
  json topo = hybrid("etp-topo", 2, 2, "two_batch", 1, moe::testing::balancing("none"));
  topo["placement"] = "topology_aware";
  json balanced = {{"name", "ep-balanced"}, {"kind", "ep"}, {"ep", 4}, {"placement", "balanced"}, {"chunks", 2}};
  json strategies = json::array({{{"name", "tp"}, {"kind", "tp_pp"}, {"tp", 2}, {"pp", 2}, {"microbatches", 2}},
                                 balanced, topo, hybrid("etp", 2, 2, "chunked", 3, moe::testing::balancing("none"))});
  json cfg = small_config(2, 2, 3, 2, 8, strategies);
  cfg["workload"]["routing"] = "zipf:1.2,local:0.5";
  const moe::testing::RunResults out = run_json(cfg);
  CHECK(out.all_verified);
  if (world_rank() != 0) return;
  const moe::Config c = moe::parse_config(cfg);
  moe::SimulateOptions o;
  o.hardware = moe::default_profile(c.cluster);
  o.feasible_variant = false;
  const auto sim = moe::simulate_config(c, o);
  REQUIRE(out.strategies.size() == sim["strategies"].size());
  for (size_t i = 0; i < out.strategies.size(); ++i) {
    INFO(out.strategies[i]["name"].get<std::string>());
    CHECK(out.strategies[i]["layout"].dump() == sim["strategies"][i]["layout"].dump());
  }
}

TEST_CASE("expert_tp, 8 ranks: ep 4 x expert_tp 2 with several experts per group, and replicas when E < ep", "[np8]") {
  REQUIRE(world_size() == 8);
  SECTION("8 experts: 2 per group") {
    const json strategies = every_mode(4, 2, 1.0);
    const json cfg = small_config(2, 4, 8, 4, 8, strategies);
    check_verified(run_json(cfg), strategies.size(), 2, cfg);
  }
  SECTION("3 experts on 4 groups: replicas") {
    json strategies = every_mode(4, 2, 0);
    strategies.push_back({{"name", "etp4"}, {"kind", "ep"}, {"ep", 2}, {"expert_tp", 4}, {"chunks", 2}});
    const json cfg = small_config(2, 4, 3, 4, 8, strategies);
    const moe::testing::RunResults out = run_json(cfg);
    check_verified(out, strategies.size(), 2, cfg);
    if (world_rank() == 0) {
      const auto& layer0 = out.strategies[0]["layout"]["experts_of_rank"][0];
      std::vector<int> groups_of(3, 0);
      for (int g = 0; g < 4; ++g) {
        REQUIRE(layer0[2 * g].size() == 1);
        ++groups_of.at(layer0[2 * g][0].get<int>());
      }
      CHECK(groups_of[0] + groups_of[1] + groups_of[2] == 4);
      CHECK(out.strategies[4]["layout"]["expert_tp"] == 4);
    }
  }
}

TEST_CASE("expert_tp, 16 ranks: ep 8 x expert_tp 2 with topology-aware placement and overlap", "[np16]") {
  REQUIRE(world_size() == 16);
  json cfg = moe::testing::load_json("configs/cpu-16rank.json");
  cfg["workload"]["decode_steps"] = 2;
  cfg["run"]["iterations"] = 1;
  json topo = hybrid("etp-topo-chunked", 8, 2, "chunked", 2, moe::testing::balancing("paper", 1.0));
  topo["placement"] = "topology_aware";
  json strategies = json::array({topo, hybrid("etp-two_batch", 8, 2, "two_batch", 1, moe::testing::balancing("paper"))});
  cfg["strategies"] = strategies;
  check_verified(run_json(cfg), 2, 2, cfg);
}
