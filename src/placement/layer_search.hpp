// Internal to src/placement: one layer's topology-aware search (topology_aware.cpp). The state
// (layer_search.cpp) keeps the rows on every NIC and NVLink port under the runtime's replica
// choice and updates them move by move; the descent (swap_candidates.cpp) proposes swaps that
// should relieve the busiest link and keeps the first that improves the objective.
#pragma once
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "placement/placement.hpp"
#include "topology/topology.hpp"

namespace moe {

// Lexicographic search objective. `at_max` (NICs within tolerance of the maximum) lets the search
// leave plateaus where several links share the maximum: relieving one of them is progress.
struct Objective {
  double max_nic = 0;
  int at_max = 0;
  double max_port = 0;
  double balancedness = 1;
};

bool improves(const Objective& a, const Objective& b);

struct Candidate {
  double score;   // predicted fall of the targeted link's load (rows)
  int slot_a, slot_b;
};


// One layer's search state, in rows. Replica choice is the runtime's (split_over_replicas in
// plan_metrics.hpp): a source whose node holds replicas of e uses those (its own rank first); a
// "far" source deals over all replicas, its rotation index counting the ranks of the far nodes
// before it. Far sources follow each other in rotation order, so a run of them with equal rows
// deals one arc (add_deal): nodes whose sources all send e the same rows are grouped into segments
// of equal nodes ([E][N] tables), and the far rows of e cost one deal per segment of far nodes plus
// one pass over e's replicas. Moving one replica touches only e's replicas, the two nodes involved
// and, when a node's far status changes, its sources' dispatch.
class LayerSearch {
 public:
  LayerSearch(const Topology& topo, int nics, const std::vector<std::vector<double>>& tokens, const LayerPlacement& lp);

  // `reject_above`: stop after the busiest NIC when it carries more (improves() is then false).
  Objective measure(double reject_above = std::numeric_limits<double>::infinity()) const;

  // Greedy descent: each round gathers swaps that should relieve the busiest NIC (else the busiest
  // NVLink port), evaluates the best estimates exactly and takes the first that improves the
  // objective without balancedness falling below `min_balancedness`.
  void run(int max_moves, int per_round, double min_balancedness);

  LayerPlacement result() const;

 private:
  int rank_of(int slot) const { return slot / spg_; }
  int node_of(int rank) const { return rank / gpn_; }
  bool hosts(int rank, int e) const {
    for (int i = 0; i < spg_; ++i)
      if (slot_[size_t(rank) * spg_ + i] == e) return true;
    return false;
  }
  int hosted(int rank) const {
    int n = 0;
    for (int i = 0; i < spg_; ++i) n += slot_[size_t(rank) * spg_ + i] >= 0;
    return std::max(1, n);
  }
  static bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }
  // Rows the GPUs on `rank`'s NIC send to expert e (their dispatch demand).
  double rail_demand(int rank, int e) const { return rail_[size_t(nic_of_[rank]) * E_ + e]; }

  // Node n's sources send e's rows off-node (n holds no replica of e): dispatch side only.
  void far_dispatch(int e, int n, double sign);
  // Deals the far sources of nodes [a, b) (all far, d replica nodes before them) over e's m replicas
  // into far_whole_ / far_part_ / far_diff_: one arc per segment of equal nodes (add_deal).
  void far_gap(int e, int a, int b, int d, int m);
  // Rows from the nodes holding no replica of e, dealt over all replicas by position (d = replica
  // nodes before each gap of far nodes), into far_rows_[e].
  void compute_far(int e);
  // Adds (sign +1) or removes far_rows_[e] at e's replicas, position by position: received rows and
  // their combine off-node.
  void apply_far(int e, double sign);
  // Sources of node n when it holds replicas of e: own rank, else split over the node's replicas
  // via NVLink. Nothing when n holds none (its sources are far).
  void local_part(int e, int n, double sign);
  // Only the far split and the two nodes involved change; other replica nodes keep their sources.
  // The far rows by position depend only on which nodes hold replicas: they are recomputed only when
  // that set changes, and a move that restores the replica list before the last recomputation (a
  // rejected swap undone) takes the rows saved then.
  void move_expert(int e, int from, int to);
  // Swaps the experts of two slots (either may be empty); applying it twice restores the state.
  void swap_slots(int sa, int sb);
  // A swap must move two different experts and never put two copies of one expert on a rank.
  bool valid(int sa, int sb) const;

  bool try_round(std::vector<Candidate> cands, int per_round, double min_bal, Objective& cur);
  // The k ranks off `node` with the least loaded NICs (ties: lower rank), ascending: smallest() over
  // them with by_nic, skipping ranks whose NIC load is not below the k-th.
  void quietest(int node, size_t k, std::vector<int>& out) const;
  // Swaps that should relieve the busiest NIC. Its load is what its GPUs send off-node: dispatch of
  // their tokens to experts absent from the node, and combine rows of the experts they host.
  // Partners: replicas of the experts those GPUs use most that the node lacks, slots on the nodes
  // that use the NIC's hosted experts most, the least loaded NICs' slots, and the node's other rails.
  // Each pair is scored by the predicted load of the two NICs it changes most (the busiest and the
  // partner's); only pairs predicted to lower the maximum are kept.
  std::vector<Candidate> nic_candidates();
  // The partner slots every slot of the busiest NIC's node is tried with: replicas of the experts
  // its GPUs use most that the node lacks, the least loaded NICs' slots, the node's other rails.
  std::vector<int> nic_partners(int busiest, const double* demand) const;
  // Slots of the (up to two) nodes lacking expert ea that use it most.
  void add_demand_nodes(int ea, int node, std::vector<int>& partners) const;
  // Predicted fall of the maximum of the busiest NIC's load and slot sb's NIC's load when slots sa
  // and sb swap (`demand`: [E] rows of the busiest NIC's GPUs).
  double nic_swap_score(int busiest, const double* demand, int sa, int sb) const;
  void add_rank_slots(int rank, std::vector<int>& slots) const;
  // Swaps within the node of the busiest NVLink port, between a slot of that GPU and another GPU's:
  // the port stops sending the rows its GPU's tokens route to the arriving expert and sends the
  // leaving expert's instead; the combine rows change with the hosted expert.
  std::vector<Candidate> port_candidates() const;

  int G_, N_, gpn_, nics_, E_, spg_ = 1;
  const std::vector<std::vector<double>>& t_;     // [G][E] expected rows from source to expert
  std::vector<int> slot_;                         // [G * spg] expert in each slot, -1 empty
  std::vector<std::vector<int>> reps_;            // [E] ranks hosting e, ascending
  std::vector<int> on_node_;                      // [E * N] replicas of e on node n
  std::vector<int> nic_of_;                       // [G] NIC index of each rank
  std::vector<double> node_demand_;               // [E * N] rows node n's sources send to e
  std::vector<double> rail_;                      // [N * nics][E] rows the GPUs on a NIC send to e
  std::vector<double> node_rows_;                 // [E * N] rows node n's first source sends to e
  std::vector<char> node_even_;                   // [E * N] every source of n sends e those rows
  std::vector<int> segment_end_;                  // [E * N] end of the run of equal even nodes from n
  std::vector<double> node_full_, node_rest_;     // [E * N] floor(node_rows_ / m_e) and the rest (m_e fixed)
  std::vector<double> recv_;                      // [G] rows processed
  std::vector<double> disp_inter_, comb_inter_;   // [G] rows sent off-node (dispatch, combine)
  std::vector<double> disp_intra_, comb_intra_;   // [G] rows sent over NVLink
  std::vector<double> nic_;                       // [N * nics] rows sent through each NIC
  double total_rows_ = 0;
  std::vector<unsigned> seen_;                    // [G * spg] stamp_ of the sa that last listed a partner slot
  unsigned stamp_ = 0;
  std::vector<std::vector<double>> far_rows_;     // [E][m_e] far rows dealt to e's replica at position i
  std::vector<std::vector<int>> undo_reps_;       // [E] replica list before e's last far recomputation
  std::vector<std::vector<double>> undo_rows_;    // [E] far_rows_ for undo_reps_
  double far_whole_ = 0;                          // scratch deals (add_deal): far and node-local
  std::vector<double> far_part_, far_diff_, loc_part_, loc_diff_;
};

}  // namespace moe
