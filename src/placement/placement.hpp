// Expert -> rank maps per layer, behind one interface so algorithms can be swapped
// (round_robin here; load- and topology-aware algorithms plug in through make_placer()).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "topology/topology.hpp"

namespace moe {

// Placement of one layer's experts on `num_ranks` ranks.
struct LayerPlacement {
  int num_experts = 0;
  int num_ranks = 0;
  std::vector<std::vector<int>> replicas;      // [E] ranks hosting expert e (>= 1 each, ascending)
  std::vector<std::vector<int>> slots;         // [num_ranks] experts hosted by rank r, in slot order

  int max_slots() const;
  // Index of expert e within rank r's slots, or -1.
  int slot_of(int rank, int expert) const;
};

struct Placement {
  std::string algorithm;
  std::vector<LayerPlacement> layers;          // [L]
};

// Expected routing used by load-aware placers: tokens[src_rank][expert] per layer (may be empty =
// uniform).
struct LoadProfile {
  std::vector<std::vector<std::vector<double>>> tokens;  // [L][num_ranks][E]
};

class Placer {
 public:
  virtual ~Placer() = default;
  virtual std::string name() const = 0;
  virtual Placement place(int num_layers, int num_experts, const Topology& topo, const LoadProfile& load) const = 0;
};

// "round_robin": E <= G: expert e on rank e*G/E... see placement.cpp; E > G: ceil(E/G) per rank;
// G > E: every rank hosts one expert, replicas spread round-robin.
std::unique_ptr<Placer> make_placer(const std::string& name);   // placer_names(); throws ConfigError for others

// Checks the invariants every placement must satisfy (every expert placed, slot bounds,
// replicas/slots consistent). Throws Error naming the layer and expert.
void check_placement(const Placement& p, int num_ranks);

// The replicas that may serve `expert` for tokens from `src_rank`: the nearest link class only. They
// are the contiguous run replicas[expert][first, first + count) (replica lists ascend and ranks are
// node-major): the source's own rank if it hosts the expert, else the expert's replicas on the
// source's node, else all replicas. `source_index` (p) numbers the sources sharing these candidates
// from 0 in rank order: 0 for the own rank; among the node's ranks that do not host the expert; among
// the ranks of the nodes holding no replica of it. Replica lists must ascend (MOE_REQUIRE).
struct ReplicaCandidates {
  int first = 0;
  int count = 0;             // m
  int64_t source_index = 0;  // p
};
ReplicaCandidates replica_candidates(const LayerPlacement& lp, int expert, int src_rank, const Topology& topo);

// Which replica of `expert` serves the next assignment from `src_rank` in one dispatch plan: among
// replica_candidates, the one with the fewest assignments so far (`replica_load`, [num_ranks],
// updated), ties to the first in cyclic candidate order from position (p * expert_total +
// expert_before) mod m. expert_total: the source's assignments to `expert` in the whole routing;
// expert_before: those in tokens before this plan's (chunked dispatch continues the rotation).
// With one slot per rank this deals the source's j-th assignment (routing order) to candidate
// (p * expert_total + j) mod m, so sources with equal totals together deal one contiguous cycle:
// every candidate gets floor or ceil of the mean. Deterministic; no communication.
int choose_replica(const LayerPlacement& lp, int expert, int src_rank, const Topology& topo, int64_t expert_total,
                   int64_t expert_before, std::vector<int64_t>& replica_load);

}  // namespace moe
