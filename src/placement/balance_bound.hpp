// The best balancedness any one-expert-per-GPU placement can reach for given expert loads: integer
// replica counts by water-filling, and the same-node-first refinement. Yardsticks for the placers.
#pragma once
#include <vector>

namespace moe {

struct BalanceBound {
  std::vector<int> replicas;      // [E] replica counts r_e (>= 1, sum = slots)
  double max_per_replica = 0;     // max_e load_e / r_e: a lower bound on the busiest GPU's load
  double mean_per_slot = 0;       // sum of loads / slots
  double balancedness = 1;        // mean_per_slot / max_per_replica (1 when all loads are 0)
};

// With `slots` GPUs each hosting one expert (E <= slots), expert e's load is split over its r_e
// replicas, so some GPU carries at least load_e / r_e whatever the routing rule. Water-filling (each
// next replica to the expert with the largest load per replica, ties to the lower index) minimizes
// max_e load_e / r_e over integer counts with sum r_e = slots. Loads must be >= 0.
BalanceBound best_balancedness_bound(const std::vector<double>& loads, int slots);

// The tighter bound under the runtime's replica rule (own rank, then same node first) when every
// node sends an equal share of each expert's load: c <= nodes replicas carry load/c on average; with
// more, the node holding the fewest (at most floor(c/nodes)) serves its own load/nodes alone. The
// smallest achievable maximum of those per-replica loads (bisection over it), as mean / max. Not a
// bound when demand differs between nodes (node-local routing).
double same_node_first_bound(const std::vector<double>& loads, int slots, int nodes);

}  // namespace moe
