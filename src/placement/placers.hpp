// Factories of the load- and topology-aware placers (make_placer() registers them by name) and the
// options a caller with the full cluster config can set.
#pragma once
#include <memory>
#include <vector>

#include "placement/placement.hpp"

namespace moe {

// "balanced": replicas for the heaviest experts when G > E, then hierarchical packing by load
// (nodes first, then GPUs within a node). See balanced.cpp.
std::unique_ptr<Placer> make_balanced_placer();

// Replica counts (sum = num_ranks when G >= E, else all 1) that minimize the largest expected load
// per replica under the runtime's replica choice with demand spread evenly over nodes: c <= nodes
// replicas on distinct nodes share the load evenly (w/c); beyond that every node serves its own
// sources, so a replica carries w / (nodes * floor(c / nodes)). Exposed for tests.
std::vector<int> balanced_replica_counts(const std::vector<double>& expert_load, int num_ranks, int num_nodes);

// True when two layers' token tables ([G][E]) are bitwise identical. Every placer here plans a
// layer from its own tokens alone (deterministically), so such a layer takes the earlier one's plan.
bool same_layer_tokens(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b);

struct TopologyAwareOptions {
  int nics_per_node = 0;                 // 0: one NIC per GPU (gpus_per_node)
  double max_balancedness_loss = 0.05;   // vs the balanced plan, per layer
  int max_moves_per_layer = 0;           // 0: 64 + num_ranks / 4
  int candidates_per_round = 24;         // exactly evaluated swaps per round, best estimates first
};

// "topology_aware": the balanced plan improved by a local search over swaps of the experts of two
// GPU slots while the busiest inter-node link (then the busiest NVLink port) carries fewer bytes.
std::unique_ptr<Placer> make_topology_aware_placer(const TopologyAwareOptions& options = {});

}  // namespace moe
