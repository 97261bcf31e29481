// Expert -> rank maps per layer, behind one interface so algorithms can be swapped
// (round_robin here; load- and topology-aware algorithms plug in through make_placer()).
#pragma once
#include <memory>
#include <string>
#include <vector>

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
std::unique_ptr<Placer> make_placer(const std::string& name);   // throws ConfigError for unknown names
std::vector<std::string> placer_names();

// Checks the invariants every placement must satisfy (every expert placed, slot bounds,
// replicas/slots consistent). Throws Error naming the layer and expert.
void check_placement(const Placement& p, int num_ranks);

// Which replica of `expert` serves tokens from `src_rank`: same rank, then same node, then the
// replica with the fewest assignments so far (`replica_load`, updated), ties -> lower rank.
int choose_replica(const LayerPlacement& lp, int expert, int src_rank, const Topology& topo,
                   std::vector<int64_t>& replica_load);

}  // namespace moe
