// Tests for src/placement: every placer's invariants on regular and odd shapes, plan metrics against
// an independent recount through the runtime dispatch plan (whole and chunked), the issue's figures on
// fixed inputs (skewed, uniform and node-local routing on 4 x 8 GPUs), load profiles, and plan files.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <functional>
#include <numeric>

#include "core/config.hpp"
#include "core/error.hpp"
#include "model/generator.hpp"
#include "placement/balance_bound.hpp"
#include "placement/load_profile.hpp"
#include "placement/placers.hpp"
#include "placement/plan_json.hpp"
#include "placement/plan_metrics.hpp"
#include "placement/strategy_plan.hpp"
#include "routing/dispatch_plan.hpp"
#include "expect_config_error.hpp"

using namespace moe;
using json = nlohmann::json;

using moe::testing::expect_config_error;

namespace {

struct Shape {
  int experts, nodes, gpus_per_node;
};

const std::vector<Shape> kShapes = {{3, 2, 3},  {8, 1, 3},  {16, 4, 8}, {16, 2, 8}, {5, 2, 2},
                                    {7, 3, 4},  {64, 4, 8}, {12, 3, 4}, {1, 2, 2},  {32, 2, 8}};
const std::vector<std::string> kProfiles = {"", "uniform", "zipf:1.2", "hot:0.5", "uniform,local:0.8", "zipf:0.8,local:0.6"};

LoadProfile make_profile(const std::string& spec, int layers, int experts, int top_k, const Topology& topo,
                         double tokens_per_rank = 40) {
  if (spec.empty()) return LoadProfile{};
  return profile_from_distribution(parse_routing_distribution(spec, "test"), layers, experts, top_k, topo,
                                   tokens_per_rank, 1234);
}


// Deterministic skewed routing of `tokens` tokens from `src`: top-k distinct experts drawn from the
// expected shares of `tokens_row` (an expected-profile row), so counts differ per source.
Routing synthetic_routing(const std::vector<double>& tokens_row, int tokens, int top_k, uint64_t seed) {
  const int E = static_cast<int>(tokens_row.size());
  Routing r;
  r.num_tokens = tokens;
  r.top_k = top_k;
  const uint64_t key = stream_key(seed, 77);
  for (int t = 0; t < tokens; ++t) {
    std::vector<bool> used(E, false);
    for (int j = 0; j < top_k; ++j) {
      double total = 0;
      for (int e = 0; e < E; ++e) total += used[e] ? 0 : tokens_row[e] + 1e-3;
      double u = uniform_at(key, uint64_t(t) * top_k + j) * total;
      int pick = -1;
      for (int e = 0; e < E; ++e) {
        if (used[e]) continue;
        pick = e;
        u -= tokens_row[e] + 1e-3;
        if (u <= 0) break;
      }
      used[pick] = true;
      r.expert.push_back(pick);
      r.weight.push_back(1.0f / top_k);
    }
  }
  return r;
}

std::unique_ptr<Placer> placer_for(const std::string& name, int nics) {
  if (name != "topology_aware") return make_placer(name);
  TopologyAwareOptions o;
  o.nics_per_node = nics;
  return make_topology_aware_placer(o);
}

}  // namespace

TEST_CASE("placement: every algorithm keeps the invariants on regular and odd shapes", "[placement]") {
  for (const std::string& name : placer_names())
    for (const Shape& sh : kShapes)
      for (const std::string& spec : kProfiles) {
        const Topology topo(sh.nodes, sh.gpus_per_node);
        const int G = topo.num_ranks(), E = sh.experts, L = 2;
        INFO(name << ": " << E << " experts on " << sh.nodes << " x " << sh.gpus_per_node << ", profile '" << spec << "'");
        const LoadProfile prof = make_profile(spec, L, E, std::min(2, E), topo);
        const Placement p = make_placer(name)->place(L, E, topo, prof);
        REQUIRE(p.algorithm == name);
        REQUIRE(p.layers.size() == size_t(L));
        REQUIRE_NOTHROW(check_placement(p, G));
        for (const LayerPlacement& lp : p.layers) {
          size_t replicas = 0, slots = 0;
          for (int e = 0; e < E; ++e) {
            CHECK(!lp.replicas[e].empty());
            CHECK(std::is_sorted(lp.replicas[e].begin(), lp.replicas[e].end()));
            replicas += lp.replicas[e].size();
          }
          for (int r = 0; r < G; ++r) {
            slots += lp.slots[r].size();
            if (E <= G) CHECK(lp.slots[r].size() == 1);  // one expert or replica per GPU
            else CHECK(lp.slots[r].size() <= size_t((E + G - 1) / G));
            std::vector<int> s = lp.slots[r];
            std::sort(s.begin(), s.end());
            CHECK(std::adjacent_find(s.begin(), s.end()) == s.end());
          }
          CHECK(replicas == slots);
          CHECK(slots == size_t(std::max(E, G)));
        }
        const Placement again = make_placer(name)->place(L, E, topo, prof);
        for (int l = 0; l < L; ++l) {
          CHECK(again.layers[l].replicas == p.layers[l].replicas);
          CHECK(again.layers[l].slots == p.layers[l].slots);
        }
      }
}

TEST_CASE("placement: expert_tp places experts on groups and each member holds one shard of them", "[placement]") {
  nlohmann::json j = nlohmann::json::parse(R"({
    "name": "etp", "model": {"layers": 2, "hidden": 4, "ffn_hidden": 8, "experts": 3, "heads": 2, "head_dim": 2},
    "workload": {"batch_sequences": 8, "prompt_tokens": 3, "decode_steps": 2},
    "cluster": {"nodes": 2, "gpus_per_node": 4},
    "strategies": [{"name": "etp", "kind": "ep", "ep": 4, "expert_tp": 2, "placement": "round_robin"}]})");
  const Config c = moe::parse_config(j);
  const Topology topo = Topology::from_config(c.cluster);
  const Topology groups = moe::expert_group_topology(c.cluster, 2);
  CHECK(groups.num_ranks() == 4);
  CHECK(groups.nodes() == 2);
  const Placement g = make_placer("round_robin")->place(2, 3, groups, {});
  const Placement p = moe::plan_for_strategy(c, c.strategies[0], topo);
  check_placement(p, 8);
  REQUIRE(p.layers.size() == 2);
  for (size_t l = 0; l < p.layers.size(); ++l) {
    const moe::LayerPlacement& lp = p.layers[l];
    CHECK(lp.num_experts == 6);
    CHECK(lp.num_ranks == 8);
    for (int e = 0; e < 3; ++e)
      for (int m = 0; m < 2; ++m) {
        std::vector<int> want;
        for (int grp : g.layers[l].replicas[e]) want.push_back(grp * 2 + m);
        CHECK(lp.replicas[e * 2 + m] == want);
        for (int r : want) CHECK(topo.node_of(r) == topo.node_of(r - m));   // a group stays in its node
      }
  }
}

TEST_CASE("placement: group and shard load profiles of expert_tp groups", "[placement]") {
  moe::LoadProfile ranks;   // one layer, 4 source ranks x 3 experts
  ranks.tokens = {{{1, 2, 3}, {4, 5, 6}, {7, 8, 9}, {10, 11, 12}}};
  const moe::LoadProfile groups = moe::group_load_profile(ranks, 2);
  REQUIRE(groups.tokens.size() == 1);
  CHECK(groups.tokens[0] == std::vector<std::vector<double>>{{5, 7, 9}, {17, 19, 21}});
  const moe::LoadProfile shards = moe::shard_load_profile(ranks, 2);
  CHECK(shards.tokens[0][1] == std::vector<double>{4, 4, 5, 5, 6, 6});
  CHECK(shards.tokens[0][3] == std::vector<double>{10, 10, 11, 11, 12, 12});
  CHECK(moe::group_load_profile(ranks, 1).tokens == ranks.tokens);
  CHECK(moe::group_load_profile({}, 2).tokens.empty());   // uniform stays uniform
}

TEST_CASE("placement: a strategy's plan over ranks is the shard placement of its plan over units", "[placement]") {
  nlohmann::json j = nlohmann::json::parse(R"({
    "name": "etp", "model": {"layers": 3, "hidden": 4, "ffn_hidden": 8, "experts": 8, "heads": 2, "head_dim": 2},
    "workload": {"batch_sequences": 8, "prompt_tokens": 3, "decode_steps": 2, "routing": "zipf:1.2,local:0.5"},
    "cluster": {"nodes": 2, "gpus_per_node": 4},
    "strategies": [{"name": "etp", "kind": "ep", "ep": 4, "expert_tp": 2, "placement": "topology_aware"},
                   {"name": "flat", "kind": "ep", "ep": 8, "placement": "balanced"}]})");
  const Config c = moe::parse_config(j);
  const Topology topo = Topology::from_config(c.cluster);
  for (const moe::StrategyConfig& s : c.strategies) {
    const Placement units = moe::unit_plan_for_strategy(c, s, topo);
    CHECK(units.layers.front().num_ranks == s.ep);
    CHECK(moe::placement_unit_topology(c, s).num_ranks() == s.ep);
    const Placement ranks = moe::plan_for_strategy(c, s, topo);
    const Placement sharded = moe::shard_placement(units, s.expert_tp);
    REQUIRE(ranks.layers.size() == sharded.layers.size());
    for (size_t l = 0; l < ranks.layers.size(); ++l) {
      CHECK(ranks.layers[l].replicas == sharded.layers[l].replicas);
      CHECK(ranks.layers[l].slots == sharded.layers[l].slots);
    }
  }
  // The units of the expert_tp strategy see its skew: the hottest expert's group is not round robin's.
  const Placement rr = make_placer("round_robin")->place(3, 8, moe::placement_unit_topology(c, c.strategies[0]), {});
  const Placement ta = moe::unit_plan_for_strategy(c, c.strategies[0], topo);
  bool differs = false;
  for (size_t l = 0; l < ta.layers.size(); ++l) differs = differs || ta.layers[l].slots != rr.layers[l].slots;
  CHECK(differs);
}

TEST_CASE("placement: unknown algorithm names are config errors listing the known ones", "[placement]") {
  expect_config_error([] { make_placer("best"); }, "placement", "topology_aware");
}

TEST_CASE("placement: replica counts fill the spare slots, heaviest experts first", "[placement]") {
  CHECK(balanced_replica_counts({1, 1, 1, 1}, 8, 2) == std::vector<int>{2, 2, 2, 2});
  CHECK(balanced_replica_counts({1, 1, 1}, 2, 1) == std::vector<int>{1, 1, 1});  // E > G: no replicas
  // One hot expert on 2 nodes: up to 2 replicas w/c falls; beyond, only multiples of 2 help.
  const std::vector<int> c = balanced_replica_counts({10, 1, 1, 1}, 10, 2);
  CHECK(std::accumulate(c.begin(), c.end(), 0) == 10);
  CHECK(c[0] == 6);
  CHECK(c[0] % 2 == 0);
}

TEST_CASE("placement: split_over_replicas matches choose_replica call by call, whole and chunked", "[placement]") {
  const Topology topo(3, 4);
  const Placement p = make_placer("balanced")->place(1, 5, topo, make_profile("zipf:1.5", 1, 5, 2, topo));
  const LayerPlacement& lp = p.layers[0];
  std::vector<ReplicaShare> shares;
  for (int e = 0; e < 5; ++e)
    for (int src = 0; src < topo.num_ranks(); ++src)
      for (int count : {0, 1, 2, 3, 7, 12})
        for (int chunk : {count, 1, 2, 5}) {
          // One plan per chunk, each with fresh load counters, the rotation continuing over the routing.
          std::vector<double> got(topo.num_ranks(), 0);
          for (int done = 0; done < count;) {
            std::vector<int64_t> load(topo.num_ranks(), 0);
            const int before = done;
            for (; done < std::min(count, before + std::max(1, chunk)); ++done)
              got[choose_replica(lp, e, src, topo, count, before, load)] += 1;
          }
          split_over_replicas(lp, e, src, topo, count, shares);
          std::vector<double> want(topo.num_ranks(), 0);
          for (const auto& s : shares) want[s.rank] += s.rows;
          INFO("expert " << e << " src " << src << " count " << count << " chunk " << chunk);
          CHECK(got == want);
        }
}

TEST_CASE("placement: the replica deal is as even as integer counts allow over the sources", "[placement]") {
  // Hand-built: 2 nodes x 4. Expert 0 on ranks 0, 1, 2 (node 0), expert 1 on ranks 3..7.
  const Topology topo(2, 4);
  LayerPlacement lp;
  lp.num_experts = 2;
  lp.num_ranks = 8;
  lp.replicas = {{0, 1, 2}, {3, 4, 5, 6, 7}};
  lp.slots = {{0}, {0}, {0}, {1}, {1}, {1}, {1}, {1}};
  REQUIRE_NOTHROW(check_placement(Placement{"hand", {lp}}, 8));
  // Sources 4..7 are far from expert 0 (rotation index 0..3); source 3 is near (index 0 on node 0).
  CHECK(replica_candidates(lp, 0, 6, topo).source_index == 2);
  CHECK(replica_candidates(lp, 0, 3, topo).count == 3);
  CHECK(replica_candidates(lp, 1, 0, topo).count == 1);  // rank 3, the only replica on node 0
  CHECK(replica_candidates(lp, 1, 5, topo).first == 2);  // its own rank
  // One assignment each (decode): sources 4, 5, 6, 7 start at positions 0, 1, 2, 0.
  std::vector<int> got;
  for (int s = 4; s < 8; ++s) {
    std::vector<int64_t> load(8, 0);
    got.push_back(choose_replica(lp, 0, s, topo, 1, 0, load));
  }
  CHECK(got == std::vector<int>{0, 1, 2, 0});
  // Two each: starts 2p mod 3 = 0, 2, 1, 0 deal {0,1}, {2,0}, {1,2}, {0,1}: 3, 3, 2 of 8.
  std::vector<int> per_rank(8, 0);
  for (int s = 4; s < 8; ++s) {
    std::vector<int64_t> load(8, 0);
    for (int j = 0; j < 2; ++j) ++per_rank[choose_replica(lp, 0, s, topo, 2, 0, load)];
  }
  CHECK(per_rank == std::vector<int>{3, 3, 2, 0, 0, 0, 0, 0});
  std::vector<ReplicaShare> shares;
  split_over_replicas(lp, 0, 5, topo, 2, shares);  // start 2: ranks 2 and 0
  REQUIRE(shares.size() == 3);
  CHECK(shares[0].rows == 1);
  CHECK(shares[1].rows == 0);
  CHECK(shares[2].rows == 1);
  // Fractional counts: start 1 * 1.5 = 1.5, so [1.5, 3) covers half of position 1 and all of 2.
  split_over_replicas(lp, 0, 5, topo, 1.5, shares);
  CHECK(shares[0].rows == 0);
  CHECK(shares[1].rows == 0.5);
  CHECK(shares[2].rows == 1);
}

TEST_CASE("placement: plan metrics equal a recount through the runtime dispatch plan", "[placement]") {
  const int k = 2, tokens = 37, row_bytes = 64;
  for (const Shape& sh : {Shape{16, 4, 8}, Shape{3, 2, 3}, Shape{8, 1, 3}, Shape{6, 3, 4}})
    for (const std::string& name : placer_names()) {
      const Topology topo(sh.nodes, sh.gpus_per_node);
      const int G = topo.num_ranks(), E = sh.experts, nics = 2;
      INFO(name << ": " << E << " experts on " << sh.nodes << " x " << sh.gpus_per_node);
      const LoadProfile expected = make_profile("zipf:1.2,local:0.5", 1, E, k, topo);
      // Counted routing: each source draws its own tokens; the placement plans for the expected one.
      std::vector<std::vector<double>> counted(G, std::vector<double>(E, 0));
      std::vector<Routing> routing;
      for (int s = 0; s < G; ++s) {
        routing.push_back(synthetic_routing(expected.tokens[0][s], tokens, k, 1000 + s));
        for (int32_t e : routing.back().expert) counted[s][e] += 1;
      }
      const Placement p = placer_for(name, nics)->place(1, E, topo, expected);
      const LayerPlacement& lp = p.layers[0];
      std::vector<std::vector<int64_t>> bytes(G, std::vector<int64_t>(G, 0));
      std::vector<double> per_gpu(G, 0);
      for (int s = 0; s < G; ++s) {
        const DispatchPlan dp = make_dispatch_plan(routing[s], 0, tokens, lp, s, topo);
        for (int d = 0; d < G; ++d) {
          bytes[s][d] += dp.send_rows[d] * row_bytes;  // dispatch
          bytes[d][s] += dp.send_rows[d] * row_bytes;  // combine
          per_gpu[d] += dp.send_rows[d];
        }
      }
      const TrafficSummary recount = summarize_traffic(topo, nics, bytes);
      const PlanMetrics m = compute_plan_metrics(lp, topo, nics, row_bytes, counted);
      CHECK(m.tokens_per_gpu == per_gpu);
      CHECK(m.intra_node_bytes == double(recount.intra_node_bytes));
      CHECK(m.inter_node_bytes == double(recount.inter_node_bytes));
      CHECK(m.max_inter_link_bytes == double(recount.max_inter_link_bytes));
      CHECK(m.max_intra_link_bytes == double(recount.max_intra_link_bytes));
      const double mean = std::accumulate(per_gpu.begin(), per_gpu.end(), 0.0) / G;
      CHECK(m.balancedness == Approx(mean / *std::max_element(per_gpu.begin(), per_gpu.end())));
      const auto rows = expected_dispatch_rows(lp, topo, counted);
      for (int s = 0; s < G; ++s) {
        const DispatchPlan dp = make_dispatch_plan(routing[s], 0, tokens, lp, s, topo);
        for (int d = 0; d < G; ++d) CHECK(rows[s][d] == double(dp.send_rows[d]));
        // Chunked dispatch (chunks of 10, 10, 10, 7 tokens) sends the same rows to every rank.
        std::vector<int64_t> chunked(G, 0);
        for (int t0 = 0; t0 < tokens; t0 += 10) {
          const DispatchPlan c = make_dispatch_plan(routing[s], t0, std::min(10, tokens - t0), lp, s, topo);
          for (int d = 0; d < G; ++d) chunked[d] += c.send_rows[d];
        }
        CHECK(chunked == dp.send_rows);
      }
    }
}

TEST_CASE("placement figure: balanced vs round_robin on zipf 1.2, 4 x 8 GPUs, 16 experts, top-2", "[placement]") {
  const Topology topo(4, 8);
  const int E = 16, L = 4, k = 2, nics = 8;
  const LoadProfile prof = make_profile("zipf:1.2", L, E, k, topo, 40);
  const Placement bal = make_placer("balanced")->place(L, E, topo, prof);
  const Placement rr = make_placer("round_robin")->place(L, E, topo, prof);
  for (int l = 0; l < L; ++l) {
    const PlanMetrics mb = compute_plan_metrics(bal.layers[l], topo, nics, 1, prof.tokens[l]);
    const PlanMetrics mr = compute_plan_metrics(rr.layers[l], topo, nics, 1, prof.tokens[l]);
    std::vector<double> w(E, 0);
    for (const auto& row : prof.tokens[l])
      for (int e = 0; e < E; ++e) w[e] += row[e];
    // Two caps: any one-expert-per-GPU plan (water-filling), and plans under the runtime rule with
    // every node sending the same demand (the hottest expert's 9th replica shares a node, whose own
    // quarter of the load then falls on 2 replicas). Balanced must reach the rule's cap.
    const double bound = same_node_first_bound(w, topo.num_ranks(), topo.nodes());
    const BalanceBound cap = best_balancedness_bound(w, topo.num_ranks());
    WARN("layer " << l << ": balancedness balanced " << mb.balancedness << ", round_robin " << mr.balancedness
                  << ", bound with one expert per GPU " << cap.balancedness << ", with same-node-first replicas "
                  << bound);
    CHECK(bound <= cap.balancedness + 1e-9);
    CHECK(mb.balancedness <= bound + 1e-9);
    CHECK(mb.balancedness >= 0.97 * bound);
    CHECK(mb.balancedness >= 0.85 * cap.balancedness);
    CHECK(mr.balancedness <= 0.5 * mb.balancedness);
    CHECK(mr.balancedness <= 0.25 * cap.balancedness);
  }
}

TEST_CASE("placement figure: uniform routing on 4 x 8 GPUs loads every GPU equally", "[placement]") {
  // 16 experts x 2 replicas on distinct nodes. Per source 40 tokens x top-2 / 16 = 5 rows per expert.
  // A replica serves its own rank (5) and its node's 7 others (35); the 16 sources of the two far
  // nodes start at 5p mod 2 = 0, 1, 0, 1, ...: 8 x 3 + 8 x 2 = 40 rows to each replica. 80 per GPU.
  const Topology topo(4, 8);
  const int E = 16, k = 2, nics = 8;
  const LoadProfile prof = make_profile("uniform", 1, E, k, topo, 40);
  for (const std::string& name : placer_names()) {
    const Placement p = placer_for(name, nics)->place(1, E, topo, prof);
    const PlanMetrics m = compute_plan_metrics(p.layers[0], topo, nics, 1, prof.tokens[0]);
    INFO(name);
    CHECK(m.tokens_per_gpu == std::vector<double>(32, 80.0));
    CHECK(m.balancedness == 1.0);
  }
}

TEST_CASE("balance bound: water-filling replica counts on hand-computed cases", "[placement]") {
  // {3, 1} on 4 slots: 3/1 > 1 -> {2, 1}; 1.5 > 1 -> {3, 1}; max 1 per replica, mean 1: bound 1.
  BalanceBound b = best_balancedness_bound({3, 1}, 4);
  CHECK(b.replicas == std::vector<int>{3, 1});
  CHECK(b.max_per_replica == 1.0);
  CHECK(b.mean_per_slot == 1.0);
  CHECK(b.balancedness == 1.0);
  // {6, 2, 1} on 4 slots: {2, 1, 1} (max 3, expert 0); mean 9/4 -> 0.75.
  b = best_balancedness_bound({6, 2, 1}, 4);
  CHECK(b.replicas == std::vector<int>{2, 1, 1});
  CHECK(b.max_per_replica == 3.0);
  CHECK(b.balancedness == Approx(0.75));
  // {5, 4} on 3 slots: {2, 1}: max(2.5, 4) = 4, mean 3 -> 0.75; ties go to the lower expert.
  b = best_balancedness_bound({5, 4}, 3);
  CHECK(b.replicas == std::vector<int>{2, 1});
  CHECK(b.balancedness == Approx(0.75));
  CHECK(best_balancedness_bound({2, 2}, 3).replicas == std::vector<int>{2, 1});
  // E = slots: no replicas, bound mean/max of the loads; all zero: 1.
  CHECK(best_balancedness_bound({4, 2, 0, 2}, 4).balancedness == Approx(0.5));
  CHECK(best_balancedness_bound({0, 0}, 8).balancedness == 1.0);
  CHECK_THROWS(best_balancedness_bound({1, 1, 1}, 2));
  CHECK_THROWS(best_balancedness_bound({1, -1}, 4));
  // Same node first, {6, 1} on 4 slots of 2 nodes: water-filling gives {3, 1} (max 2, bound 7/4/2 =
  // 0.875), but 3 replicas on 2 nodes leave one node with 1 replica serving its own 6/2 = 3; 2 give
  // 3 as well, so the best maximum is 3: 1.75 / 3.
  CHECK(best_balancedness_bound({6, 1}, 4).balancedness == Approx(0.875));
  CHECK(same_node_first_bound({6, 1}, 4, 2) == Approx(1.75 / 3));
  // {6, 2} on 5 slots of 2 nodes: 4 replicas (2 per node) carry 1.5, the other expert 2: 1.6 / 2.
  CHECK(same_node_first_bound({6, 2}, 5, 2) == Approx(0.8));
  CHECK(same_node_first_bound({1, 1}, 2, 4) == Approx(1.0));
}

TEST_CASE("placement figure: topology_aware on node-local routing, 4 x 8 GPUs, 16 experts, top-2", "[placement]") {
  const Topology topo(4, 8);
  const int E = 16, L = 4, k = 2, nics = 8;
  for (const std::string spec : {"uniform,local:0.8", "zipf:1.2,local:0.8", "hot:0.5,local:0.7"}) {
    const LoadProfile prof = make_profile(spec, L, E, k, topo, 40);
    const Placement bal = make_placer("balanced")->place(L, E, topo, prof);
    const Placement top = placer_for("topology_aware", nics)->place(L, E, topo, prof);
    for (int l = 0; l < L; ++l) {
      const PlanMetrics mb = compute_plan_metrics(bal.layers[l], topo, nics, 1, prof.tokens[l]);
      const PlanMetrics mt = compute_plan_metrics(top.layers[l], topo, nics, 1, prof.tokens[l]);
      const double cut = 1 - mt.max_inter_link_bytes / mb.max_inter_link_bytes;
      WARN(spec << " layer " << l << ": busiest NIC rows balanced " << mb.max_inter_link_bytes << " -> topology_aware "
                << mt.max_inter_link_bytes << " (cut " << 100 * cut << "%), balancedness " << mb.balancedness
                << " -> " << mt.balancedness);
      CHECK(cut >= 0.2);
      CHECK(mt.balancedness >= mb.balancedness - 0.05);
    }
  }
}

TEST_CASE("placement figure: topology_aware is never worse than balanced on the shipped configs", "[placement]") {
  namespace fs = std::filesystem;
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(MOE_SOURCE_DIR) / "configs")) {
    if (entry.path().extension() != ".json") continue;
    const Config c = load_config_file(entry.path().string());
    for (const StrategyConfig& s : c.strategies) {
      if (s.kind != "ep") continue;
      const Topology topo = Topology::from_config(c.cluster);
      const int nics = c.cluster.inter_node.nics_per_node;
      const std::string spec = s.placement_profile.empty() ? "uniform" : s.placement_profile;
      const double per_rank = double(c.workload.batch_sequences) * (c.workload.prompt_tokens + c.workload.decode_steps) /
                              topo.num_ranks();
      const LoadProfile prof = make_profile(spec, c.model.layers, c.model.experts, c.model.top_k, topo, per_rank);
      const Placement bal = make_placer("balanced")->place(c.model.layers, c.model.experts, topo, prof);
      const Placement top = placer_for("topology_aware", nics)->place(c.model.layers, c.model.experts, topo, prof);
      for (int l = 0; l < c.model.layers; ++l) {
        const PlanMetrics mb = compute_plan_metrics(bal.layers[l], topo, nics, 1, prof.tokens[l]);
        const PlanMetrics mt = compute_plan_metrics(top.layers[l], topo, nics, 1, prof.tokens[l]);
        INFO(entry.path().filename().string() << " strategy " << s.name << " layer " << l);
        CHECK(mt.max_inter_link_bytes <= mb.max_inter_link_bytes * (1 + 1e-9));
        CHECK(mt.balancedness >= mb.balancedness - 1e-9);
      }
      ++checked;
    }
  }
  CHECK(checked >= 3);
}

TEST_CASE("load profile: distribution specs parse or fail with their path", "[placement]") {
  CHECK(parse_routing_distribution("uniform", "p").kind == RoutingDistribution::Kind::uniform);
  const RoutingDistribution z = parse_routing_distribution("zipf:1.2,local:0.8", "p");
  CHECK(z.kind == RoutingDistribution::Kind::zipf);
  CHECK(z.param == 1.2);
  CHECK(z.locality == 0.8);
  CHECK(parse_routing_distribution("hot:0.5", "p").param == 0.5);
  CHECK_FALSE(is_routing_distribution("gate"));
  CHECK(is_routing_distribution("hot:1"));
  expect_config_error([] { parse_routing_distribution("zipf:abc", "--routing"); }, "--routing", "needs a number");
  expect_config_error([] { parse_routing_distribution("hot:1.5", "x.y"); }, "x.y", "in [0, 1]");
  expect_config_error([] { parse_routing_distribution("zipf:-1", "x"); }, "x", ">= 0");
  expect_config_error([] { parse_routing_distribution("local:0.5", "x"); }, "x", "not a routing distribution");
  expect_config_error([] { parse_routing_distribution("uniform,zipf:1", "x"); }, "x", "local:p");
  expect_config_error([] { parse_routing_distribution("gate", "workload.routing"); }, "workload.routing", "gate");
}

TEST_CASE("load profile: expected routing from distributions", "[placement]") {
  const Topology topo(4, 2);
  const int E = 8, k = 2;
  const double per_rank = 10;
  for (const std::string spec : {"uniform", "zipf:1.2", "hot:0.5", "zipf:3", "hot:1,local:1", "uniform,local:1"}) {
    INFO(spec);
    const LoadProfile p = make_profile(spec, 3, E, k, topo, per_rank);
    for (const auto& layer : p.tokens)
      for (const auto& row : layer) {
        CHECK(std::accumulate(row.begin(), row.end(), 0.0) == Approx(per_rank * k));
        for (double x : row) CHECK(x <= per_rank * (1 + 1e-9));  // a token picks k distinct experts
      }
  }
  // zipf: a seed-derived permutation per layer, the same for every source.
  const LoadProfile z = make_profile("zipf:1.2", 3, E, k, topo, per_rank);
  CHECK(z.tokens[0][0] == z.tokens[0][7]);
  CHECK(z.tokens[0][0] != z.tokens[1][0]);
  CHECK(base_popularity(parse_routing_distribution("zipf:1.2", ""), 1, E, 1234) ==
        base_popularity(parse_routing_distribution("zipf:1.2", ""), 1, E, 1234));
  // hot: fraction f to the first max(1, E/8) experts.
  const LoadProfile h = make_profile("hot:0.5", 1, 16, 1, Topology(1, 2), 100);
  CHECK(h.tokens[0][0][0] + h.tokens[0][0][1] == Approx(50));
  // local:1 sends everything to the node's home experts (e % nodes == node).
  const LoadProfile loc = make_profile("uniform,local:1", 1, E, k, topo, per_rank);
  for (int s = 0; s < topo.num_ranks(); ++s)
    for (int e = 0; e < E; ++e) CHECK((loc.tokens[0][s][e] > 0) == (e % 4 == topo.node_of(s)));
}

TEST_CASE("load profile: from an earlier results JSON", "[placement]") {
  const Topology topo(1, 4);
  const json results = json::parse(R"({"strategies": [
      {"name": "baseline", "kind": "tp_pp", "load": {"layers": [{"tokens_per_expert": [1, 1, 1]}]}},
      {"name": "proposed", "kind": "ep", "load": {"layers": [{"tokens_per_expert": [8, 4, 0]}]}}]})");
  const LoadProfile p = profile_from_results(results, 1, 3, topo, "run.json");
  REQUIRE(p.tokens.size() == 1);
  for (const auto& row : p.tokens[0]) CHECK(row == std::vector<double>{2, 1, 0});  // spread over 4 sources
  expect_config_error([&] { profile_from_results(results, 1, 4, topo, "run.json"); },
                      "strategies[1].load.layers[0].tokens_per_expert", "run.json");
  expect_config_error([&] { profile_from_results(results, 2, 3, topo, "run.json"); }, "strategies[1].load.layers",
                      "2 layers");
  json bad = results;
  bad["strategies"][1]["load"]["layers"][0]["tokens_per_expert"][1] = -1;
  expect_config_error([&] { profile_from_results(bad, 1, 3, topo, "r"); },
                      "strategies[1].load.layers[0].tokens_per_expert[1]", "non-negative");
  expect_config_error([&] { profile_from_results(json::object(), 1, 3, topo, "r"); }, "strategies", "missing");
  expect_config_error([&] { profile_from_results_file("/nonexistent/run.json", 1, 3, topo); }, "--load-profile",
                      "cannot open");
}

TEST_CASE("plan json: round trip and errors naming the JSON path", "[placement]") {
  const Topology topo(2, 3);
  const Placement p = placer_for("topology_aware", 3)->place(2, 4, topo, make_profile("zipf:1.2,local:0.5", 2, 4, 2, topo));
  const json j = json::parse(placement_to_json(p, 6, "zipf:1.2,local:0.5").dump());
  const Placement back = placement_from_json(j, "plan.json");
  CHECK(back.algorithm == "topology_aware");
  REQUIRE(back.layers.size() == 2);
  for (int l = 0; l < 2; ++l) {
    CHECK(back.layers[l].replicas == p.layers[l].replicas);
    CHECK(back.layers[l].slots == p.layers[l].slots);
    CHECK(back.layers[l].num_experts == 4);
    CHECK(back.layers[l].num_ranks == 6);
  }
  REQUIRE_NOTHROW(check_plan_shape(back, 2, 4, 6, "plan.json"));
  expect_config_error([&] { check_plan_shape(back, 3, 4, 6, "plan.json"); }, "layers", "model.layers");
  expect_config_error([&] { check_plan_shape(back, 2, 5, 6, "plan.json"); }, "layers[0].replicas", "model.experts");
  expect_config_error([&] { check_plan_shape(back, 2, 4, 8, "plan.json"); }, "num_ranks", "8");

  auto fails = [&](const std::function<void(json&)>& edit, const std::string& path, const std::string& needle) {
    json bad = j;
    edit(bad);
    expect_config_error([&] { placement_from_json(bad, "plan.json"); }, path, needle);
  };
  fails([](json& b) { b["schema_version"] = 2; }, "schema_version", "must be 1");
  fails([](json& b) { b.erase("layers"); }, "layers", "missing");
  fails([](json& b) { b["extra"] = 1; }, "extra", "unknown key");
  fails([](json& b) { b["algorithm"] = 3; }, "algorithm", "string");
  fails([](json& b) { b["layers"][1]["slots"].erase(5); }, "layers[1].slots", "one entry per rank");
  fails([](json& b) { b["layers"][0]["replicas"][0][0] = 6; }, "layers[0].replicas[0][0]", "[0, 5]");
  fails([](json& b) { b["layers"][0]["replicas"][b["layers"][0]["slots"][0][0].get<int>()] = json::array(); },
        "layers[0].slots[0][0]", "does not list it");
  fails([](json& b) { b["layers"][0]["replicas"][0].push_back(b["layers"][0]["replicas"][0][0]); },
        "layers[0].replicas[0]", "ascending");
  fails([](json& b) { b["layers"][0]["slots"][0].push_back(b["layers"][0]["slots"][1][0]); }, "layers[0].slots[0]",
        "at most 1");
  fails([](json& b) { b["layers"][0]["slots"][0] = "x"; }, "layers[0].slots[0]", "must be an array");
  fails([](json& b) { b["layers"][1]["replicas"].push_back(json::array({0})); }, "layers[1].replicas", "layer 0 has 4");
  expect_config_error([] { read_plan_file("/nonexistent/plan.json"); }, "", "cannot open plan file");
}
