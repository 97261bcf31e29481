// Internal to src/cost: the expert-parallel flows of one layer (CostModel::EpRouting) and the expected
// assignments per token under expert shares, shared by cost_model.cpp and ep_routing.cpp.
#pragma once
#include <memory>
#include <vector>

#include "cost/cost_model.hpp"

namespace moe {

// Flows of one ep layer per local token of every rank (a step's chunk of n rows per rank scales them by n).
struct CostModel::EpRouting {
  int max_slots = 1;
  double sent_rows = 0;              // rows the busiest sender sends per local token (including to itself)
  std::vector<double> sent_rows_of;  // [G] rows each rank sends per local token (including to itself)
  bool per_source = false;           // sent_rows_of differs between ranks (per-source routing)
  std::vector<double> slot_rows;     // [G * max_slots] rows rank r's slot receives per local token of every rank
  std::vector<double> recv_rows;     // [G]
  int busiest = 0;                   // rank receiving the most rows
  int peers = 0;                     // most distinct destinations of one rank (excluding itself)
  bool crosses_nodes = false;
  std::shared_ptr<LinkLoads> dispatch, combine;  // rows on each link per local token of every rank

  // Sums of the flows per rank, to and from other ranks of its node (intra) or other nodes (inter).
  std::vector<double> sent_intra, sent_inter, recv_intra, recv_inter;  // [G]

  void begin(int ranks, int slots);   // empty flows on `ranks` ranks with `slots` slots each
  // Adds w rows per local token from `src` to slot `slot` of `dst` (dispatch there, combine back).
  // `seen[dst] == src` marks peers already counted for this source in `peers_of_src`.
  void add_flow(const Topology& topo, int src, int dst, int slot, double w, std::vector<int>& seen, int& peers_of_src);
  // The dispatch and combine link loads from the sums (a rank's inter-node rows use its rail's NIC;
  // combine is dispatch reversed).
  void finish(const Topology& topo, int nics);
};

// Expected assignments per token to each expert of a layer (sums to k), with the capacity applied.
std::vector<double> assignments_per_token(const Config& c, const StrategyConfig& s, const ExpectedRouting& r, int layer,
                                          int64_t step_tokens);

}  // namespace moe
