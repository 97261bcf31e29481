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

std::vector<std::string> placer_names() { return {"round_robin", "balanced", "topology_aware"}; }

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

int choose_replica(const LayerPlacement& lp, int expert, int src_rank, const Topology& topo,
                   std::vector<int64_t>& replica_load) {
  const auto& reps = lp.replicas.at(expert);
  if (reps.size() == 1) return reps[0];
  int best = -1;
  int best_class = 3;
  int64_t best_load = 0;
  for (int r : reps) {
    const int cls = static_cast<int>(topo.link(src_rank, r));
    const int64_t load = replica_load.at(r);
    if (best < 0 || cls < best_class || (cls == best_class && load < best_load)) {
      best = r;
      best_class = cls;
      best_load = load;
    }
  }
  ++replica_load[best];
  return best;
}

}  // namespace moe
