// Index plans that move token rows to experts and back: the local plan (all experts on this rank,
// used by tp_pp) and the expert-parallel dispatch plan (tokens to the ranks hosting their experts,
// with replica choice) plus the receiver's regrouping. Host code, tested on the CPU.
#pragma once
#include <cstdint>
#include <vector>

#include "placement/placement.hpp"
#include "routing/router.hpp"

namespace moe {

// All experts local: rows grouped by expert (ascending), token order within an expert.
struct LocalExpertPlan {
  std::vector<int32_t> gather_token;     // [A] token row feeding permuted row i
  std::vector<int64_t> rows_per_expert;  // [E]
  std::vector<int32_t> combine_slot;     // [T*k] permuted row of assignment (t, j), -1 if dropped
  std::vector<float> combine_weight;     // [T*k]
};
LocalExpertPlan make_local_plan(const Routing& r, int num_experts);

// Expert parallel, sender side, for tokens [token0, token0+num_tokens) of routing `r`.
// Send rows are ordered by destination rank, then the destination's slot, then (token, j).
struct DispatchPlan {
  int num_ranks = 0;
  int max_slots = 0;
  std::vector<int32_t> send_token;       // [A] local token row (relative to token0) of send row i
  std::vector<int64_t> send_rows;        // [num_ranks] rows to each rank
  std::vector<int64_t> send_rows_slot;   // [num_ranks * max_slots] rows to (rank, slot)
  std::vector<int32_t> combine_slot;     // [num_tokens*k] returned row of assignment (t, j), -1 dropped
  std::vector<float> combine_weight;     // [num_tokens*k]
  std::vector<int64_t> replica_assignments;  // [num_ranks] assignments sent to each rank
};
DispatchPlan make_dispatch_plan(const Routing& r, int token0, int num_tokens, const LayerPlacement& lp, int my_rank,
                                const Topology& topo);

// Receiver side: rows arrive grouped by source rank, then slot. Regroup slot-major for the expert
// bank and back.
struct ReceivePlan {
  std::vector<int64_t> recv_rows;        // [num_ranks] rows from each source
  std::vector<int64_t> rows_per_slot;    // [max_slots]
  std::vector<int32_t> to_slot_major;    // [R] received row feeding slot-major row i
  std::vector<int32_t> to_source_major;  // [R] slot-major row holding received row i
  bool identity = true;                  // both permutations are the identity
};
// recv_rows_slot: [num_ranks * max_slots] rows from (source, my slot).
ReceivePlan make_receive_plan(const std::vector<int64_t>& recv_rows_slot, int num_ranks, int max_slots);

}  // namespace moe
