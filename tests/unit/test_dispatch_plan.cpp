// Local, dispatch and receive plans: every kept assignment is sent exactly once to a rank hosting
// its expert, rows are grouped (rank, slot, token order), replicas are dealt in the source-rotated
// cycle (also across chunks), and the receiver's regrouping is a permutation restoring arrival order.
#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>

#include "placement/placement.hpp"
#include "routing/dispatch_plan.hpp"

using namespace moe;

namespace {

Routing make_routing(int tokens, int k, int experts, uint64_t seed) {
  Routing r;
  r.num_tokens = tokens;
  r.top_k = k;
  r.chosen_per_expert.assign(experts, 0);
  r.dropped_per_expert.assign(experts, 0);
  for (int t = 0; t < tokens; ++t) {
    std::vector<int> pool(experts);
    std::iota(pool.begin(), pool.end(), 0);
    for (int j = 0; j < k; ++j) {
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      const int pick = static_cast<int>((seed >> 33) % pool.size());
      const int e = pool[pick];
      pool.erase(pool.begin() + pick);
      r.expert.push_back(e);
      r.weight.push_back(0.25f + 0.1f * j);
      ++r.chosen_per_expert[e];
    }
  }
  return r;
}

// One expert per rank: slots[r] = {expert_of[r]}.
LayerPlacement one_slot_placement(const std::vector<int>& expert_of, int num_experts) {
  LayerPlacement lp;
  lp.num_experts = num_experts;
  lp.num_ranks = static_cast<int>(expert_of.size());
  lp.replicas.assign(num_experts, {});
  lp.slots.assign(lp.num_ranks, {});
  for (int r = 0; r < lp.num_ranks; ++r) {
    lp.slots[r] = {expert_of[r]};
    lp.replicas[expert_of[r]].push_back(r);
  }
  return lp;
}

// Tokens each routed to the given experts (top-k = experts per token), weights 1/k.
Routing fixed_routing(const std::vector<std::vector<int>>& experts_per_token) {
  Routing r;
  r.num_tokens = static_cast<int>(experts_per_token.size());
  r.top_k = static_cast<int>(experts_per_token.at(0).size());
  for (const auto& t : experts_per_token)
    for (int e : t) {
      r.expert.push_back(e);
      r.weight.push_back(1.0f / r.top_k);
    }
  return r;
}

}  // namespace

TEST_CASE("local plan groups assignments by expert in token order", "[dispatch]") {
  Routing r = make_routing(7, 2, 4, 3);
  r.expert[5] = -1;  // a dropped assignment
  r.weight[5] = 0;
  const LocalExpertPlan p = make_local_plan(r, 4);
  CHECK(std::accumulate(p.rows_per_expert.begin(), p.rows_per_expert.end(), int64_t(0)) == 13);
  CHECK(p.combine_slot[5] == -1);
  int64_t row0 = 0;
  for (int e = 0; e < 4; ++e) {
    for (int64_t i = row0; i < row0 + p.rows_per_expert[e]; ++i) {
      const int t = p.gather_token[i];
      // the assignment (t, j) pointing at row i must be to expert e
      bool found = false;
      for (int j = 0; j < 2; ++j)
        if (p.combine_slot[t * 2 + j] == i) found = r.expert[t * 2 + j] == e;
      CHECK(found);
      if (i > row0) CHECK(p.gather_token[i - 1] <= t);
    }
    row0 += p.rows_per_expert[e];
  }
}

TEST_CASE("dispatch plan sends each kept assignment to a host of its expert", "[dispatch]") {
  const Topology topo(2, 3);  // 6 ranks
  for (int experts : {3, 6, 8}) {
    const Placement pl = make_placer("round_robin")->place(1, experts, topo, {});
    check_placement(pl, 6);
    const LayerPlacement& lp = pl.layers[0];
    const Routing r = make_routing(20, 2, experts, experts);
    for (int me = 0; me < 6; ++me) {
      const DispatchPlan p = make_dispatch_plan(r, 4, 12, lp, me, topo);
      INFO("experts " << experts << " rank " << me);
      CHECK(p.send_token.size() == 24u);
      CHECK(std::accumulate(p.send_rows.begin(), p.send_rows.end(), int64_t(0)) == 24);
      // Walk send rows: rank-major, then slot, and each row's assignment maps back to it.
      int64_t row = 0;
      for (int dest = 0; dest < 6; ++dest)
        for (int slot = 0; slot < p.max_slots; ++slot)
          for (int64_t i = 0; i < p.send_rows_slot[dest * p.max_slots + slot]; ++i, ++row) {
            const int t = p.send_token[row];
            int expert = -1;
            for (int j = 0; j < 2; ++j)
              if (p.combine_slot[t * 2 + j] == row) expert = r.expert[(4 + t) * 2 + j];
            REQUIRE(expert >= 0);
            CHECK(lp.slots[dest].at(slot) == expert);
          }
      CHECK(row == 24);
      if (experts == 3) {
        // Replicas: a rank that hosts the expert keeps it; otherwise the same node is preferred.
        for (int t = 0; t < 12; ++t)
          for (int j = 0; j < 2; ++j) {
            const int e = r.expert[(4 + t) * 2 + j];
            const int32_t row_of = p.combine_slot[t * 2 + j];
            int dest = 0;
            int64_t acc = p.send_rows[0];
            while (row_of >= acc) acc += p.send_rows[++dest];
            const bool local_replica = lp.slot_of(me, e) >= 0;
            if (local_replica) CHECK(dest == me);
            bool same_node_exists = false;
            for (int rep : lp.replicas[e]) same_node_exists |= topo.node_of(rep) == topo.node_of(me);
            if (same_node_exists) CHECK(topo.node_of(dest) == topo.node_of(me));
          }
      }
    }
  }
}

TEST_CASE("receive plan regroups slot-major and back", "[dispatch]") {
  // 3 sources, 2 slots: counts [src][slot]
  const std::vector<int64_t> counts = {2, 1, 0, 3, 1, 1};
  const ReceivePlan p = make_receive_plan(counts, 3, 2);
  CHECK(p.recv_rows == std::vector<int64_t>{3, 3, 2});
  CHECK(p.rows_per_slot == std::vector<int64_t>{3, 5});
  CHECK_FALSE(p.identity);
  // slot 0 rows come from arrival rows 0,1 (src0) and 6 (src2); slot 1 from 2, 3,4,5, 7.
  CHECK(p.to_slot_major == std::vector<int32_t>{0, 1, 6, 2, 3, 4, 5, 7});
  for (size_t i = 0; i < p.to_slot_major.size(); ++i) CHECK(p.to_source_major[p.to_slot_major[i]] == int32_t(i));
  const ReceivePlan one = make_receive_plan({4, 0, 2}, 3, 1);
  CHECK(one.identity);
  CHECK(one.to_slot_major == std::vector<int32_t>{0, 1, 2, 3, 4, 5});
}

TEST_CASE("dispatch plan deals equally near replicas in a cycle rotated per source", "[dispatch]") {
  // 2 nodes x 4. Expert 0 on ranks 1, 3 and 5; expert 1 on 0, 2, 4, 6, 7.
  const Topology topo(2, 4);
  const LayerPlacement lp = one_slot_placement({1, 0, 1, 0, 1, 0, 1, 1}, 2);
  const Routing one = fixed_routing({{0, 1}});  // a decode step: one token, both experts
  auto dest_of_expert0 = [&](const Routing& r, int src, int t0, int n) {
    const DispatchPlan p = make_dispatch_plan(r, t0, n, lp, src, topo);
    std::vector<int64_t> rows(8, 0);
    for (int d = 0; d < 8; ++d) rows[d] = lp.slots[d][0] == 0 ? p.send_rows[d] : 0;
    return rows;
  };
  // Node 0's ranks without expert 0 are 0 and 2 (rotation index 0, 1): candidates {1, 3}, one
  // assignment each starts at position 0 and 1. The old rule (ties to the lower rank) sent both to 1.
  CHECK(dest_of_expert0(one, 0, 0, 1) == std::vector<int64_t>{0, 1, 0, 0, 0, 0, 0, 0});
  CHECK(dest_of_expert0(one, 2, 0, 1) == std::vector<int64_t>{0, 0, 0, 1, 0, 0, 0, 0});
  // Node 1 holds rank 5: its other ranks use it, rank 5 itself keeps its rows.
  for (int src : {4, 5, 6, 7}) CHECK(dest_of_expert0(one, src, 0, 1) == std::vector<int64_t>{0, 0, 0, 0, 0, 1, 0, 0});

  // 1 node x 4, expert 0 on ranks 1, 2, 3: rank 0 is the node's only other source (index 0).
  // Three tokens to expert 0 in chunks of one token continue the cycle: ranks 1, 2, 3, not 1, 1, 1.
  const Topology flat(1, 4);
  const LayerPlacement lp3 = one_slot_placement({1, 0, 0, 0}, 2);
  const Routing three = fixed_routing({{0}, {0}, {0}});
  std::vector<int> got;
  for (int t0 = 0; t0 < 3; ++t0) {
    const DispatchPlan p = make_dispatch_plan(three, t0, 1, lp3, 0, flat);
    for (int d = 1; d < 4; ++d)
      if (p.send_rows[d] == 1) got.push_back(d);
  }
  CHECK(got == std::vector<int>{1, 2, 3});

  // Far sources: 2 nodes x 3, expert 0 only on node 0 (ranks 0, 1, 2). Node 1's ranks 3, 4, 5 have
  // rotation index 0, 1, 2; with two tokens each the starts are 0, 2, 1 (2p mod 3), dealing
  // {0,1}, {2,0}, {1,2}: two rows per replica.
  const Topology two(2, 3);
  const LayerPlacement far = one_slot_placement({0, 0, 0, 1, 1, 1}, 2);
  const Routing two_tokens = fixed_routing({{0, 1}, {1, 0}});
  std::vector<int64_t> per_rank(6, 0);
  std::vector<std::vector<int64_t>> by_source;
  for (int src = 3; src < 6; ++src) {
    const DispatchPlan p = make_dispatch_plan(two_tokens, 0, 2, far, src, two);
    by_source.push_back({p.send_rows[0], p.send_rows[1], p.send_rows[2]});
    for (int d = 0; d < 3; ++d) per_rank[d] += p.send_rows[d];
  }
  CHECK(by_source == std::vector<std::vector<int64_t>>{{1, 1, 0}, {1, 0, 1}, {0, 1, 1}});
  CHECK(per_rank == std::vector<int64_t>{2, 2, 2, 0, 0, 0});
}
