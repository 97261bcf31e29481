// Placement helpers shared by every algorithm (invariant checks, replica choice) and the
// round_robin placer. Other algorithms (placers.hpp) register in make_placer().
#include "placement/placement.hpp"

#include <algorithm>
#include <sstream>

#include "core/error.hpp"
#include "placement/placers.hpp"

namespace moe {

int LayerPlacement::max_slots() const {
  size_t m = 0;
  for (const auto& s : slots) m = std::max(m, s.size());
  return static_cast<int>(m);
}

int LayerPlacement::slot_of(int rank, int expert) const {
  const auto& s = slots.at(rank);
  for (size_t i = 0; i < s.size(); ++i)
    if (s[i] == expert) return static_cast<int>(i);
  return -1;
}

namespace {

// E <= G: expert e on rank e (so experts spread over all nodes in order), and when G > E the
// remaining ranks host replicas of experts 0, 1, ... in turn. E > G: expert e on rank e % G.
class RoundRobinPlacer : public Placer {
 public:
  std::string name() const override { return "round_robin"; }
  Placement place(int num_layers, int num_experts, const Topology& topo, const LoadProfile&) const override {
    const int G = topo.num_ranks();
    Placement p;
    p.algorithm = name();
    for (int l = 0; l < num_layers; ++l) {
      LayerPlacement lp;
      lp.num_experts = num_experts;
      lp.num_ranks = G;
      lp.replicas.assign(num_experts, {});
      lp.slots.assign(G, {});
      const int hosted = std::max(num_experts, G);
      for (int i = 0; i < hosted; ++i) {
        const int expert = i % num_experts;
        const int rank = i % G;
        lp.replicas[expert].push_back(rank);
        lp.slots[rank].push_back(expert);
      }
      for (auto& r : lp.replicas) std::sort(r.begin(), r.end());
      p.layers.push_back(std::move(lp));
    }
    return p;
  }
};

}  // namespace


std::unique_ptr<Placer> make_placer(const std::string& name) {
  if (name == "round_robin") return std::make_unique<RoundRobinPlacer>();
  if (name == "balanced") return make_balanced_placer();
  if (name == "topology_aware") return make_topology_aware_placer();
  std::ostringstream os;
  os << "unknown placement algorithm '" << name << "' (known:";
  for (const auto& n : placer_names()) os << " " << n;
  os << ")";
  throw ConfigError("placement", os.str());
}

void check_placement(const Placement& p, int num_ranks) {
  for (size_t l = 0; l < p.layers.size(); ++l) {
    const LayerPlacement& lp = p.layers[l];
    const std::string where = "placement layer " + std::to_string(l);
    MOE_REQUIRE(lp.num_ranks == num_ranks && static_cast<int>(lp.slots.size()) == num_ranks,
                where + ": placement is for " + std::to_string(lp.num_ranks) + " ranks, run has " +
                    std::to_string(num_ranks));
    MOE_REQUIRE(static_cast<int>(lp.replicas.size()) == lp.num_experts, where + ": replica list size != experts");
    const int per_rank_limit = (lp.num_experts + num_ranks - 1) / num_ranks;
    for (int r = 0; r < num_ranks; ++r) {
      MOE_REQUIRE(static_cast<int>(lp.slots[r].size()) <= std::max(1, per_rank_limit),
                  where + ": rank " + std::to_string(r) + " hosts " + std::to_string(lp.slots[r].size()) +
                      " experts, limit is " + std::to_string(std::max(1, per_rank_limit)));
      for (int e : lp.slots[r]) {
        MOE_REQUIRE(e >= 0 && e < lp.num_experts, where + ": rank " + std::to_string(r) + " hosts bad expert " + std::to_string(e));
        const auto& reps = lp.replicas[e];
        MOE_REQUIRE(std::find(reps.begin(), reps.end(), r) != reps.end(),
                    where + ": rank " + std::to_string(r) + " hosts expert " + std::to_string(e) + " but is not in its replica list");
      }
    }
    for (int e = 0; e < lp.num_experts; ++e) {
      MOE_REQUIRE(!lp.replicas[e].empty(), where + ": expert " + std::to_string(e) + " is not placed");
      for (int r : lp.replicas[e])
        MOE_REQUIRE(r >= 0 && r < num_ranks && lp.slot_of(r, e) >= 0,
                    where + ": expert " + std::to_string(e) + " lists rank " + std::to_string(r) + " which does not host it");
    }
  }
}

ReplicaCandidates replica_candidates(const LayerPlacement& lp, int expert, int src_rank, const Topology& topo) {
  const std::vector<int>& reps = lp.replicas.at(expert);
  const int m = static_cast<int>(reps.size());
  MOE_REQUIRE(m > 0, "expert " + std::to_string(expert) + " has no replica");
  const int gpn = topo.gpus_per_node(), src_node = src_rank / gpn;
  // One pass: the source's node run [lo, hi), its own position, and the replica nodes before its node.
  int lo = m, hi = m, own = -1, nodes_before = 0;
  for (int i = 0; i < m; ++i) {
    const int r = reps[i], n = r / gpn;
    MOE_REQUIRE(i == 0 || reps[i - 1] < r, "expert " + std::to_string(expert) + ": replica ranks must ascend");
    if (r == src_rank) own = i;
    if (n < src_node && (i == 0 || reps[i - 1] / gpn != n)) ++nodes_before;
    if (n == src_node && lo == m) lo = i;
    if (n > src_node && hi == m) hi = i;
  }
  if (lo == m) hi = m;
  ReplicaCandidates c;
  if (own >= 0) {
    c.first = own;
    c.count = 1;
  } else if (lo < hi) {
    c.first = lo;
    c.count = hi - lo;
    int hosts_below = 0;  // the node's replicas below the source are not sources of this group
    for (int i = lo; i < hi && reps[i] < src_rank; ++i) ++hosts_below;
    c.source_index = src_rank % gpn - hosts_below;
  } else {
    c.first = 0;
    c.count = m;
    c.source_index = int64_t(src_node - nodes_before) * gpn + src_rank % gpn;
  }
  return c;
}

int choose_replica(const LayerPlacement& lp, int expert, int src_rank, const Topology& topo, int64_t expert_total,
                   int64_t expert_before, std::vector<int64_t>& replica_load) {
  const ReplicaCandidates c = replica_candidates(lp, expert, src_rank, topo);
  const int* cand = lp.replicas[expert].data() + c.first;
  const int start = static_cast<int>((c.source_index * expert_total + expert_before) % c.count);
  int best = -1;
  for (int k = 0; k < c.count; ++k) {
    const int r = cand[(start + k) % c.count];
    if (best < 0 || replica_load.at(r) < replica_load[best]) best = r;
  }
  ++replica_load[best];
  return best;
}

}  // namespace moe
