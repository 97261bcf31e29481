// Every strategy reproduces the single-rank reference (prefill and every decode step) on several
// world sizes and shapes: the paper's 16 ranks, 4 ranks, E < G with replicas (3 experts on 6
// ranks), E > G (8 experts on 2 ranks), attention off, balancing `paper`, capacity with drops.
// Assertions run on rank 0 with CHECK (non-throwing) so every rank stays in step for collectives.
#include <catch2/catch.hpp>

#include "mpi_test_util.hpp"

using moe::testing::run_json;
using moe::testing::small_config;
using moe::testing::world_rank;
using moe::testing::world_size;
using nlohmann::json;

namespace {

// On rank 0: every strategy was verified and passed, with the routing counts of the reference.
void check_all_verified(const moe::testing::RunResults& out, size_t expected_strategies) {
  CHECK(out.all_verified);
  if (world_rank() != 0) return;
  REQUIRE(out.strategies.size() == expected_strategies);
  for (const auto& s : out.strategies) {
    INFO("strategy " << s["name"].get<std::string>());
    CHECK(s["verification"]["checked"].get<bool>());
    CHECK(s["verification"]["passed"].get<bool>());
    CHECK(s["verification"]["max_rel_error"].get<double>() <= 1e-4);
    CHECK(s["verification"]["max_rel_error"].get<double>() >= 0);
    CHECK(s["verification"]["routing_matches_reference"].get<bool>());
    CHECK(s["prefill"]["tokens_per_s"].get<double>() > 0);
    CHECK(s["decode"]["tpot_ms"]["mean"].get<double>() > 0);
  }
}

json lb(const std::string& policy, double capacity = 0) {
  return {{"policy", policy}, {"update_interval_tokens", 8}, {"capacity_factor", capacity}};
}

}  // namespace

TEST_CASE("16 ranks: tp 8 x pp 2, ep 16 and ep 8 x expert_tp 2 match the reference on the shipped config", "[np16]") {
  REQUIRE(world_size() == 16);
  const json cfg = moe::testing::load_json("configs/cpu-16rank.json");
  const moe::testing::RunResults out = run_json(cfg);
  check_all_verified(out, 3);
  if (world_rank() == 0) {
    const auto& base = out.strategies[0];
    const auto& prop = out.strategies[1];
    CHECK(base["layout"]["tp"] == 8);
    CHECK(base["layout"]["pp"] == 2);
    CHECK(prop["layout"]["ep"] == 16);
    CHECK(prop["layout"]["max_experts_per_rank"] == 1);
    const auto& hybrid = out.strategies[2];
    CHECK(hybrid["layout"]["ep"] == 8);
    CHECK(hybrid["layout"]["expert_tp"] == 2);
    CHECK(hybrid["layout"]["max_experts_per_rank"] == 2);   // 16 experts on 8 groups, a shard of 2 per rank
    // 2 nodes x 8: tp groups stay in a node (no inter-node all-reduce); only pp crosses nodes.
    CHECK(base["traffic"]["inter_node_bytes"].get<int64_t>() > 0);
    CHECK(prop["traffic"]["inter_node_bytes"].get<int64_t>() > 0);
    // One iteration routes batch*(prompt+decode) tokens * k assignments per layer.
    const json cfgj = cfg;
    const int64_t per_layer = cfgj["workload"]["batch_sequences"].get<int64_t>() *
                              (cfgj["workload"]["prompt_tokens"].get<int64_t>() + cfgj["workload"]["decode_steps"].get<int64_t>()) *
                              cfgj["model"]["top_k"].get<int64_t>();
    // Every strategy reports every layer, in order, and counts every assignment of it once.
    const int num_layers = cfgj["model"]["layers"].get<int>();
    for (const auto& s : out.strategies) {
      INFO("strategy " << s["name"].get<std::string>());
      const auto& layers = s["load"]["layers"];
      REQUIRE(layers.size() == static_cast<size_t>(num_layers));
      for (int l = 0; l < num_layers; ++l) {
        CHECK(layers[l]["layer"].get<int>() == l);
        REQUIRE(layers[l]["tokens_per_expert"].size() == cfgj["model"]["experts"].get<size_t>());
        int64_t sum = 0;
        for (const auto& c : layers[l]["tokens_per_expert"]) sum += c.get<int64_t>();
        CHECK(sum == per_layer);
      }
    }
  }
}

TEST_CASE("16 ranks: load- and topology-aware placements match the reference", "[np16]") {
  REQUIRE(world_size() == 16);
  json cfg = moe::testing::load_json("configs/cpu-16rank.json");
  cfg["workload"]["decode_steps"] = 2;
  cfg["run"]["iterations"] = 1;
  cfg["strategies"] = json::array(
      {{{"name", "balanced"}, {"kind", "ep"}, {"ep", 16}, {"placement", "balanced"}, {"placement_profile", "zipf:1.2"}},
       {{"name", "topology"}, {"kind", "ep"}, {"ep", 16}, {"placement", "topology_aware"},
        {"placement_profile", "zipf:1.2,local:0.8"}, {"load_balancing", lb("paper")}}});
  const moe::testing::RunResults out = run_json(cfg);
  check_all_verified(out, 2);
  if (world_rank() == 0) CHECK(out.strategies[1]["layout"]["placement"] == "topology_aware");
}

TEST_CASE("16 ranks: attention off, balancing on for every strategy", "[np16]") {
  REQUIRE(world_size() == 16);
  json cfg = moe::testing::load_json("configs/cpu-16rank.json");
  cfg["model"]["attention"] = false;
  cfg["workload"]["decode_steps"] = 3;
  cfg["run"]["iterations"] = 1;
  cfg["strategies"][0]["load_balancing"] = lb("paper");
  cfg["strategies"][1]["load_balancing"] = lb("paper");
  cfg["strategies"][2]["load_balancing"] = lb("paper");
  check_all_verified(run_json(cfg), 3);
}

TEST_CASE("4 ranks: tp 2 x pp 2 vs ep 4, micro-batches and chunks", "[np4]") {
  REQUIRE(world_size() == 4);
  const json strategies = json::array(
      {{{"name", "tp2pp2"}, {"kind", "tp_pp"}, {"tp", 2}, {"pp", 2}, {"microbatches", 2}},
       {{"name", "tp4"}, {"kind", "tp_pp"}, {"tp", 4}, {"pp", 1}, {"microbatches", 1}},
       {{"name", "pp4"}, {"kind", "tp_pp"}, {"tp", 1}, {"pp", 4}, {"microbatches", 4}, {"load_balancing", lb("paper")}},
       {{"name", "ep4"}, {"kind", "ep"}, {"ep", 4}},
       {{"name", "ep4-chunked"}, {"kind", "ep"}, {"ep", 4}, {"chunks", 3}, {"load_balancing", lb("paper")}}});
  json cfg = small_config(1, 4, 16, 4, 4, strategies);
  cfg["model"]["layers"] = 4;
  SECTION("attention on") { check_all_verified(run_json(cfg), 5); }
  SECTION("attention off") {
    cfg["model"]["attention"] = false;
    check_all_verified(run_json(cfg), 5);
  }
}

TEST_CASE("4 ranks: capacity drops in global token order agree with the reference", "[np4]") {
  REQUIRE(world_size() == 4);
  const json strategies = json::array(
      {{{"name", "tp2pp2"}, {"kind", "tp_pp"}, {"tp", 2}, {"pp", 2}, {"microbatches", 2}, {"load_balancing", lb("none", 1.0)}},
       {{"name", "ep4"}, {"kind", "ep"}, {"ep", 4}, {"chunks", 2}, {"load_balancing", lb("paper", 1.0)}}});
  const moe::testing::RunResults out = run_json(small_config(2, 2, 8, 4, 8, strategies));
  check_all_verified(out, 2);
  if (world_rank() == 0) {
    // With capacity factor 1 and uneven gate routing some assignments must be dropped.
    CHECK(out.strategies[0]["load"]["dropped_total"].get<int64_t>() > 0);
    CHECK(out.strategies[1]["load"]["dropped_total"].get<int64_t>() > 0);
  }
}

TEST_CASE("6 ranks, 3 experts: replicas when G > E", "[np6]") {
  REQUIRE(world_size() == 6);
  const json strategies = json::array(
      {{{"name", "tp3pp2"}, {"kind", "tp_pp"}, {"tp", 3}, {"pp", 2}, {"microbatches", 3}},
       {{"name", "ep6"}, {"kind", "ep"}, {"ep", 6}, {"load_balancing", lb("paper")}},
       {{"name", "ep6-balanced"}, {"kind", "ep"}, {"ep", 6}, {"placement", "balanced"}, {"placement_profile", "zipf:1.2"}},
       {{"name", "ep6-topo"}, {"kind", "ep"}, {"ep", 6}, {"chunks", 2}, {"placement", "topology_aware"},
        {"placement_profile", "hot:0.5,local:0.7"}}});
  const moe::testing::RunResults out = run_json(small_config(2, 3, 3, 3, 6, strategies));
  check_all_verified(out, 4);
  if (world_rank() == 0) {
    // Every rank hosts exactly one expert; each of the 3 experts has 2 replicas.
    const auto& layer0 = out.strategies[1]["layout"]["experts_of_rank"][0];
    REQUIRE(layer0.size() == 6);
    std::vector<int> replicas(3, 0);
    for (const auto& slots : layer0) {
      REQUIRE(slots.size() == 1);
      ++replicas.at(slots[0].get<int>());
    }
    CHECK(replicas == std::vector<int>{2, 2, 2});
  }
}

TEST_CASE("2 ranks, 8 experts: several experts per rank when E > G", "[np2]") {
  REQUIRE(world_size() == 2);
  const json strategies = json::array(
      {{{"name", "pp2"}, {"kind", "tp_pp"}, {"tp", 1}, {"pp", 2}, {"microbatches", 2}},
       {{"name", "tp2"}, {"kind", "tp_pp"}, {"tp", 2}, {"pp", 1}},
       {{"name", "ep2"}, {"kind", "ep"}, {"ep", 2}, {"chunks", 2}, {"load_balancing", lb("paper")}}});
  const moe::testing::RunResults out = run_json(small_config(1, 2, 8, 2, 4, strategies));
  check_all_verified(out, 3);
  if (world_rank() == 0) CHECK(out.strategies[2]["layout"]["max_experts_per_rank"] == 4);
}

TEST_CASE("1 rank: both strategies degenerate to the reference", "[np1]") {
  REQUIRE(world_size() == 1);
  const json strategies = json::array({{{"name", "tp1"}, {"kind", "tp_pp"}}, {{"name", "ep1"}, {"kind", "ep"}}});
  check_all_verified(run_json(small_config(1, 1, 4, 2, 2, strategies)), 2);
}
