// The "topology_aware" placer (paper §1.1): start from the balanced plan and swap the experts of two
// GPU slots while the bytes on the busiest inter-node link (NIC) fall, then those on the busiest
// NVLink port, under the expected routing from each source rank to each expert (layer_search.hpp).
#include <algorithm>

#include "placement/layer_search.hpp"
#include "placement/load_profile.hpp"
#include "placement/placers.hpp"
#include "placement/plan_metrics.hpp"

namespace moe {
namespace {

class TopologyAwarePlacer : public Placer {
 public:
  explicit TopologyAwarePlacer(const TopologyAwareOptions& o) : o_(o) {}
  std::string name() const override { return "topology_aware"; }

  Placement place(int num_layers, int num_experts, const Topology& topo, const LoadProfile& load) const override {
    Placement p = make_balanced_placer()->place(num_layers, num_experts, topo, load);
    p.algorithm = name();
    const int nics = o_.nics_per_node > 0 ? o_.nics_per_node : topo.gpus_per_node();
    const int max_moves = o_.max_moves_per_layer > 0 ? o_.max_moves_per_layer : 64 + topo.num_ranks() / 4;
    std::vector<std::vector<double>> uniform;
    const std::vector<std::vector<double>>* searched = nullptr;  // tokens of the last layer searched
    for (int l = 0; l < num_layers; ++l) {
      const auto& tokens = profile_layer(load, l, topo.num_ranks(), num_experts, uniform);
      if (searched && same_layer_tokens(*searched, tokens)) {  // same balanced start, same search
        p.layers[l] = p.layers[l - 1];
        continue;
      }
      searched = &tokens;
      LayerSearch search(topo, nics, tokens, p.layers[l]);
      const double floor_bal = search.measure().balancedness - o_.max_balancedness_loss;
      search.run(max_moves, std::max(1, o_.candidates_per_round), floor_bal);
      p.layers[l] = search.result();
    }
    return p;
  }

 private:
  TopologyAwareOptions o_;
};

}  // namespace

std::unique_ptr<Placer> make_topology_aware_placer(const TopologyAwareOptions& options) {
  return std::make_unique<TopologyAwarePlacer>(options);
}

}  // namespace moe
