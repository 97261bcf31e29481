// Synthetic routing workloads, trace record/replay, balancing windows, plan files and the traffic
// prediction, through the real runner: every run must still match the single-rank reference, and
// every strategy of a run routes each token exactly as the reference does.
#include <catch2/catch.hpp>

#include "mpi_test_util.hpp"
#include "placement/plan_json.hpp"

using moe::testing::run_json;
using moe::testing::small_config;
using moe::testing::world_rank;
using moe::testing::world_size;
using nlohmann::json;

namespace {

// Rank 0's JSON on every rank.
json broadcast_json(const json& j) {
  std::string text = world_rank() == 0 ? j.dump() : std::string();
  int n = static_cast<int>(text.size());
  MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
  text.resize(n);
  MPI_Bcast(text.data(), n, MPI_CHAR, 0, MPI_COMM_WORLD);
  return json::parse(text);
}

void check_verified_with_choices(const moe::testing::RunResults& out, size_t expected) {
  CHECK(out.all_verified);
  if (world_rank() != 0) return;
  REQUIRE(out.strategies.size() == expected);
  for (const auto& s : out.strategies) {
    INFO("strategy " << s["name"].get<std::string>());
    CHECK(s["verification"]["passed"].get<bool>());
    CHECK(s["verification"]["max_rel_error"].get<double>() <= 1e-4);
    CHECK(s["verification"]["routing_matches_reference"].get<bool>());
    CHECK(s["routing"]["choices_match_reference"].get<bool>());
    CHECK(s["routing"]["trace"].is_object());
  }
}

json lb(const std::string& policy, int interval = 8) {
  return {{"policy", policy}, {"update_interval_tokens", interval}};
}

}  // namespace

TEST_CASE("4 ranks: synthetic routing matches the reference in every strategy; traces replay exactly", "[np4]") {
  REQUIRE(world_size() == 4);
  const json strategies = json::array(
      {{{"name", "tp2pp2"}, {"kind", "tp_pp"}, {"tp", 2}, {"pp", 2}, {"microbatches", 2}},
       {{"name", "ep4"}, {"kind", "ep"}, {"ep", 4}, {"chunks", 2}, {"placement", "balanced"}}});
  json cfg = small_config(2, 2, 8, 4, 8, strategies);
  for (const std::string routing : {"zipf:1.2,local:0.5", "hot:0.5,drift:2", "uniform"}) {
    INFO(routing);
    cfg["workload"]["routing"] = routing;
    const moe::testing::RunResults out = run_json(cfg);
    check_verified_with_choices(out, 2);
    const json results = broadcast_json(json{{"strategies", out.strategies}});
    // Both strategies use policy none: identical routing, identical traces.
    CHECK(results["strategies"][0]["routing"]["trace_digest"] == results["strategies"][1]["routing"]["trace_digest"]);
    CHECK(results["strategies"][1]["routing"]["source"] == "synthetic (overrides the gate's choice)");

    // Replay the ep strategy's trace with the gate's model: same choices, same digest, still verified.
    json replay_cfg = cfg;
    replay_cfg["workload"]["routing"] = "trace:results.json#ep4";
    const moe::RoutingTrace trace = moe::trace_from_results(results, "ep4", "results.json");
    const moe::testing::RunResults replayed = run_json(replay_cfg, "", &trace);
    check_verified_with_choices(replayed, 2);
    if (world_rank() == 0) {
      for (const auto& s : replayed.strategies) {
        CHECK(json(s["routing"]["trace_digest"]) == results["strategies"][1]["routing"]["trace_digest"]);
        CHECK(s["routing"]["source"] == "trace replay");
        for (size_t l = 0; l < s["load"]["layers"].size(); ++l)
          CHECK(json::parse(s["load"]["layers"][l]["tokens_per_expert"].dump()) ==
                results["strategies"][1]["load"]["layers"][l]["tokens_per_expert"]);
      }
    }
  }
}

TEST_CASE("4 ranks: policy paper on hot:0.5 raises balancedness window by window", "[np4]") {
  REQUIRE(world_size() == 4);
  const json strategies = json::array(
      {{{"name", "none"}, {"kind", "ep"}, {"ep", 4}, {"load_balancing", lb("none", 32)}},
       {{"name", "paper"}, {"kind", "ep"}, {"ep", 4}, {"load_balancing", lb("paper", 32)}}});
  json cfg = small_config(1, 4, 16, 4, 32, strategies);
  cfg["workload"]["routing"] = "hot:0.5";
  cfg["workload"]["prompt_tokens"] = 4;
  cfg["workload"]["decode_steps"] = 20;
  const moe::testing::RunResults out = run_json(cfg);
  check_verified_with_choices(out, 2);
  if (world_rank() != 0) return;
  for (int i = 0; i < 2; ++i) {
    const json& windows = out.strategies[i]["load"]["windows"];
    INFO(out.strategies[i]["name"].get<std::string>() << ": " << windows.dump());
    REQUIRE(windows.size() == 21);  // prefill (128 tokens) and each decode step (32 tokens) close a window
    const double first = windows[0]["balancedness_mean"].get<double>();
    double late = 0;
    for (size_t w = windows.size() - 5; w < windows.size(); ++w) late += windows[w]["balancedness_mean"].get<double>() / 5;
    // Mean balancedness of the first, middle and last third of the windows.
    double third[3] = {0, 0, 0};
    for (size_t w = 0; w < 21; ++w) third[w / 7] += windows[w]["balancedness_mean"].get<double>() / 7;
    if (i == 0) {
      CHECK(late < first + 0.1);   // without balancing the hot experts stay hot
      CHECK(third[2] < third[0] + 0.1);
    } else {
      // The multipliers move load off the hot experts: balancedness rises over the run.
      CHECK(late > first + 0.2);
      CHECK(third[0] < third[1]);
      CHECK(third[1] < third[2]);
      CHECK(windows[5]["multipliers_after"][0][0].get<double>() < 1.0);  // expert 0 is hot
    }
  }
}

TEST_CASE("4 ranks: a plan file's placement is used; predicted traffic equals the counted traffic", "[np4]") {
  REQUIRE(world_size() == 4);
  const json strategies = json::array({{{"name", "ep4"}, {"kind", "ep"}, {"ep", 4}}});
  json cfg = small_config(2, 2, 4, 4, 8, strategies);
  cfg["workload"]["routing"] = "zipf:1.0,local:0.6";
  // Expert e on rank 3 - e in both layers.
  const json plan_json = {{"schema_version", 1}, {"algorithm", "hand"}, {"num_ranks", 4},
                          {"layers", json::array({{{"replicas", {{3}, {2}, {1}, {0}}}, {"slots", {{3}, {2}, {1}, {0}}}},
                                                  {{"replicas", {{3}, {2}, {1}, {0}}}, {"slots", {{3}, {2}, {1}, {0}}}}})}};
  std::map<std::string, moe::Placement> plans{{"ep4", moe::placement_from_json(plan_json, "plan.json")}};
  const moe::testing::RunResults out = run_json(cfg, "", nullptr, plans);
  check_verified_with_choices(out, 1);
  if (world_rank() != 0) return;
  const json& s = out.strategies[0];
  CHECK(s["layout"]["placement"] == "hand");
  CHECK(s["layout"]["experts_of_rank"][1] == json({{3}, {2}, {1}, {0}}));
  // One expert per rank and no other ep traffic: the plan's prediction from the counted routing is exact.
  const json& t = s["traffic"];
  CHECK(t["predicted_from_counted_routing"]["intra_node_bytes"].get<double>() == t["intra_node_bytes"].get<double>());
  CHECK(t["predicted_from_counted_routing"]["inter_node_bytes"].get<double>() == t["inter_node_bytes"].get<double>());
  CHECK(t["predicted_from_counted_routing"]["max_inter_node_link_bytes"].get<double>() ==
        t["max_inter_node_link_bytes"].get<double>());
  // The plan's prediction uses the config's expected routing, and says so (it used to say "uniform").
  CHECK(t["predicted_from_plan"]["routing"] == "zipf:1.0,local:0.6");
  // tokens per GPU: rank 3 - e processed expert e's kept assignments.
  REQUIRE(s["load"]["layers"].size() == static_cast<size_t>(cfg["model"]["layers"].get<int>()));
  for (const auto& layer : s["load"]["layers"])
    for (int e = 0; e < 4; ++e) CHECK(layer["tokens_per_gpu"][3 - e] == layer["tokens_per_expert"][e]);
}

TEST_CASE("6 ranks, 3 experts: replicated plans with synthetic skew and balancing", "[np6]") {
  REQUIRE(world_size() == 6);
  const json strategies = json::array(
      {{{"name", "tp3pp2"}, {"kind", "tp_pp"}, {"tp", 3}, {"pp", 2}, {"microbatches", 3}, {"load_balancing", lb("paper")}},
       {{"name", "ep6-balanced"}, {"kind", "ep"}, {"ep", 6}, {"placement", "balanced"}, {"load_balancing", lb("paper")}},
       {{"name", "ep6-topo"}, {"kind", "ep"}, {"ep", 6}, {"chunks", 2}, {"placement", "topology_aware"},
        {"load_balancing", lb("paper")}}});
  json cfg = small_config(2, 3, 3, 3, 6, strategies);
  cfg["workload"]["routing"] = "zipf:1.5,local:0.5";
  const moe::testing::RunResults out = run_json(cfg);
  check_verified_with_choices(out, 3);
  if (world_rank() == 0) {
    CHECK(out.strategies[0]["routing"]["trace_digest"] == out.strategies[1]["routing"]["trace_digest"]);
    CHECK(out.strategies[1]["traffic"]["predicted_from_plan"]["routing"] == "zipf:1.5,local:0.5");
  }
}
