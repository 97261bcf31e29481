// Construction of the local, dispatch and receive index plans.
#include "routing/dispatch_plan.hpp"

#include "core/error.hpp"

namespace moe {

LocalExpertPlan make_local_plan(const Routing& r, int num_experts) {
  LocalExpertPlan p;
  const int k = r.top_k;
  p.rows_per_expert.assign(num_experts, 0);
  for (int32_t e : r.expert)
    if (e >= 0) ++p.rows_per_expert.at(e);
  std::vector<int64_t> next(num_experts, 0);
  for (int e = 1; e < num_experts; ++e) next[e] = next[e - 1] + p.rows_per_expert[e - 1];
  const int64_t total = num_experts ? next[num_experts - 1] + p.rows_per_expert[num_experts - 1] : 0;
  p.gather_token.assign(total, 0);
  p.combine_slot.assign(r.expert.size(), -1);
  p.combine_weight = r.weight;
  for (int t = 0; t < r.num_tokens; ++t)
    for (int j = 0; j < k; ++j) {
      const int32_t e = r.expert[t * k + j];
      if (e < 0) continue;
      const int64_t row = next[e]++;
      p.gather_token[row] = t;
      p.combine_slot[t * k + j] = static_cast<int32_t>(row);
    }
  return p;
}

DispatchPlan make_dispatch_plan(const Routing& r, int token0, int num_tokens, const LayerPlacement& lp, int my_rank,
                                const Topology& topo) {
  const int k = r.top_k;
  const int G = lp.num_ranks;
  MOE_REQUIRE(token0 >= 0 && token0 + num_tokens <= r.num_tokens, "dispatch plan: token range outside the routing");
  DispatchPlan p;
  p.num_ranks = G;
  p.max_slots = std::max(1, lp.max_slots());
  p.send_rows.assign(G, 0);
  p.send_rows_slot.assign(int64_t(G) * p.max_slots, 0);
  p.replica_assignments.assign(G, 0);
  p.combine_slot.assign(int64_t(num_tokens) * k, -1);
  p.combine_weight.assign(r.weight.begin() + int64_t(token0) * k, r.weight.begin() + int64_t(token0 + num_tokens) * k);

  // The replica rotation runs over the whole routing: this rank's assignments per expert in all of
  // it and in the tokens before this plan's (earlier chunks).
  std::vector<int64_t> routed(lp.num_experts, 0), before(lp.num_experts, 0);
  for (int64_t i = 0; i < int64_t(r.num_tokens) * k; ++i) {
    const int32_t e = r.expert[i];
    if (e < 0) continue;
    ++routed.at(e);
    if (i < int64_t(token0) * k) ++before[e];
  }
  // Pass 1: destination (rank, slot) of every kept assignment.
  std::vector<int32_t> bucket(int64_t(num_tokens) * k, -1);
  for (int t = 0; t < num_tokens; ++t)
    for (int j = 0; j < k; ++j) {
      const int32_t e = r.expert[int64_t(token0 + t) * k + j];
      if (e < 0) continue;
      const int dest = choose_replica(lp, e, my_rank, topo, routed[e], before[e], p.replica_assignments);
      const int slot = lp.slot_of(dest, e);
      const int32_t b = dest * p.max_slots + slot;
      bucket[int64_t(t) * k + j] = b;
      ++p.send_rows_slot[b];
      ++p.send_rows[dest];
    }
  // Pass 2: stable placement into bucket order.
  std::vector<int64_t> next(p.send_rows_slot.size(), 0);
  int64_t total = 0;
  for (size_t b = 0; b < next.size(); ++b) {
    next[b] = total;
    total += p.send_rows_slot[b];
  }
  p.send_token.assign(total, 0);
  for (int t = 0; t < num_tokens; ++t)
    for (int j = 0; j < k; ++j) {
      const int32_t b = bucket[int64_t(t) * k + j];
      if (b < 0) continue;
      const int64_t row = next[b]++;
      p.send_token[row] = t;
      p.combine_slot[int64_t(t) * k + j] = static_cast<int32_t>(row);
    }
  return p;
}

ReceivePlan make_receive_plan(const std::vector<int64_t>& recv_rows_slot, int num_ranks, int max_slots) {
  MOE_REQUIRE(static_cast<int64_t>(recv_rows_slot.size()) == int64_t(num_ranks) * max_slots,
              "receive plan: counts must be [ranks x slots]");
  ReceivePlan p;
  p.recv_rows.assign(num_ranks, 0);
  p.rows_per_slot.assign(max_slots, 0);
  for (int s = 0; s < num_ranks; ++s)
    for (int sl = 0; sl < max_slots; ++sl) {
      p.recv_rows[s] += recv_rows_slot[s * max_slots + sl];
      p.rows_per_slot[sl] += recv_rows_slot[s * max_slots + sl];
    }
  int64_t total = 0;
  for (int64_t n : p.recv_rows) total += n;
  p.to_slot_major.assign(total, 0);
  p.to_source_major.assign(total, 0);
  std::vector<int64_t> slot_next(max_slots, 0);
  for (int sl = 1; sl < max_slots; ++sl) slot_next[sl] = slot_next[sl - 1] + p.rows_per_slot[sl - 1];
  int64_t recv_row = 0;
  for (int s = 0; s < num_ranks; ++s)
    for (int sl = 0; sl < max_slots; ++sl)
      for (int64_t i = 0; i < recv_rows_slot[s * max_slots + sl]; ++i, ++recv_row) {
        const int64_t dst = slot_next[sl]++;
        p.to_slot_major[dst] = static_cast<int32_t>(recv_row);
        p.to_source_major[recv_row] = static_cast<int32_t>(dst);
        if (dst != recv_row) p.identity = false;
      }
  return p;
}

}  // namespace moe
