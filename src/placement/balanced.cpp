// The "balanced" placer, after the hierarchical load balancer published with DeepSeek-V3 (EPLB):
// give spare GPU slots to the experts with the largest load per replica, then pack the replicas
// onto nodes balancing node load, then onto the GPUs of each node balancing GPU load.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/error.hpp"
#include "placement/load_profile.hpp"
#include "placement/placers.hpp"

namespace moe {
namespace {

// Expected largest load per replica of an expert with load w and c replicas (see the header).
double per_replica_load(double w, int c, int nodes) {
  if (c <= nodes) return w / c;
  return w / (double(nodes) * (c / nodes));
}

// The smallest replica count above c that lowers the per-replica load: c + 1 up to one replica per
// node, then the next multiple of the node count (an extra replica on some nodes only splits those
// nodes' own demand; the nodes with fewer replicas still carry the old load).
int next_useful_count(int c, int nodes) { return c < nodes ? c + 1 : nodes * (c / nodes + 1); }

struct Item {
  int expert;
  double load;   // expected load of one replica
};

class BalancedPlacer : public Placer {
 public:
  std::string name() const override { return "balanced"; }

  Placement place(int num_layers, int num_experts, const Topology& topo, const LoadProfile& load) const override {
    MOE_REQUIRE(num_layers > 0 && num_experts > 0, "balanced placer: needs layers and experts");
    Placement p;
    p.algorithm = name();
    std::vector<std::vector<double>> uniform;
    const std::vector<std::vector<double>>* planned = nullptr;  // tokens of the last layer planned
    for (int l = 0; l < num_layers; ++l) {
      const auto& tokens = profile_layer(load, l, topo.num_ranks(), num_experts, uniform);
      if (planned && same_layer_tokens(*planned, tokens)) {
        p.layers.push_back(p.layers.back());
        continue;
      }
      planned = &tokens;
      std::vector<double> w(num_experts, 0);
      for (const auto& row : tokens)
        for (int e = 0; e < num_experts; ++e) w[e] += row[e];
      // A layer without any tokens carries no preference: plan it as uniform.
      if (std::all_of(w.begin(), w.end(), [](double x) { return x <= 0; })) w.assign(num_experts, 1.0);
      p.layers.push_back(place_layer(w, topo));
    }
    return p;
  }

 private:
  static LayerPlacement place_layer(const std::vector<double>& w, const Topology& topo) {
    const int E = static_cast<int>(w.size());
    const int G = topo.num_ranks();
    const int N = topo.nodes();
    const int gpn = topo.gpus_per_node();
    const int per_gpu = E > G ? (E + G - 1) / G : 1;  // slots per GPU: the paper's ceil(E/G)
    const std::vector<int> counts = balanced_replica_counts(w, G, N);

    // Replicas heaviest first (ties: lower expert), each with its share of the expert's load.
    std::vector<Item> items;
    for (int e = 0; e < E; ++e)
      for (int i = 0; i < counts[e]; ++i) items.push_back({e, w[e] / counts[e]});
    std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.load > b.load; });

    // Level 1: nodes. A replica goes to the node with room holding the fewest replicas of its expert
    // (so replicas spread over nodes, as the per-replica load model assumes), then the least loaded
    // node, then the lower index.
    const int node_room = gpn * per_gpu;
    std::vector<double> node_load(N, 0);
    std::vector<std::vector<Item>> node_items(N);
    std::vector<int> on_node(static_cast<size_t>(E) * N, 0);
    for (const Item& it : items) {
      int best = -1;
      for (int n = 0; n < N; ++n) {
        if (static_cast<int>(node_items[n].size()) >= node_room) continue;
        if (best < 0) {
          best = n;
          continue;
        }
        const int cn = on_node[size_t(it.expert) * N + n], cb = on_node[size_t(it.expert) * N + best];
        if (cn < cb || (cn == cb && node_load[n] < node_load[best])) best = n;
      }
      MOE_REQUIRE(best >= 0, "balanced placer: no node has room (more replicas than slots)");
      node_items[best].push_back(it);
      node_load[best] += it.load;
      ++on_node[size_t(it.expert) * N + best];
    }

    // Level 2: GPUs within each node, largest first onto the least loaded GPU with room (a GPU never
    // gets two replicas of one expert: with replicas there is one slot per GPU).
    LayerPlacement lp;
    lp.num_experts = E;
    lp.num_ranks = G;
    lp.replicas.assign(E, {});
    lp.slots.assign(G, {});
    for (int n = 0; n < N; ++n) {
      std::vector<double> gpu_load(gpn, 0);
      for (const Item& it : node_items[n]) {  // already heaviest first
        int best = -1;
        for (int g = 0; g < gpn; ++g) {
          const int rank = n * gpn + g;
          if (static_cast<int>(lp.slots[rank].size()) >= per_gpu) continue;
          if (std::find(lp.slots[rank].begin(), lp.slots[rank].end(), it.expert) != lp.slots[rank].end()) continue;
          if (best < 0 || gpu_load[g] < gpu_load[best]) best = g;
        }
        MOE_REQUIRE(best >= 0, "balanced placer: no GPU of node " + std::to_string(n) + " has room");
        const int rank = n * gpn + best;
        lp.slots[rank].push_back(it.expert);
        lp.replicas[it.expert].push_back(rank);
        gpu_load[best] += it.load;
      }
    }
    for (auto& r : lp.replicas) std::sort(r.begin(), r.end());
    return lp;
  }
};

}  // namespace

std::vector<int> balanced_replica_counts(const std::vector<double>& expert_load, int num_ranks, int num_nodes) {
  const int E = static_cast<int>(expert_load.size());
  MOE_REQUIRE(E > 0 && num_ranks > 0 && num_nodes > 0, "replica counts: bad shape");
  std::vector<int> c(E, 1);
  if (num_ranks <= E) return c;
  int spare = num_ranks - E;
  // Repeatedly lower the largest per-replica load. When that expert's next useful count does not fit
  // in the spare slots, the largest load cannot fall any further: the expert is frozen and the
  // remaining slots lower the next loads.
  // A heap of the unfrozen experts by (load per replica descending, expert ascending) picks the
  // same expert as a scan for the first maximum.
  struct Entry {
    double load;
    int expert;
  };
  auto below = [](const Entry& a, const Entry& b) { return a.load != b.load ? a.load < b.load : a.expert > b.expert; };
  std::vector<Entry> heap;
  for (int e = 0; e < E; ++e) heap.push_back({per_replica_load(expert_load[e], c[e], num_nodes), e});
  std::make_heap(heap.begin(), heap.end(), below);
  while (spare > 0 && !heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), below);
    const int top = heap.back().expert;
    heap.pop_back();
    const int want = next_useful_count(c[top], num_nodes);
    if (want - c[top] <= spare && want <= num_ranks) {  // else frozen: it leaves the heap
      spare -= want - c[top];
      c[top] = want;
      heap.push_back({per_replica_load(expert_load[top], c[top], num_nodes), top});
      std::push_heap(heap.begin(), heap.end(), below);
    }
  }
  // Slots no count can use (every expert frozen) still host a replica: largest w / c first.
  while (spare-- > 0) {
    int top = 0;
    for (int e = 1; e < E; ++e)
      if (expert_load[e] / c[e] > expert_load[top] / c[top]) top = e;
    ++c[top];
  }
  return c;
}

bool same_layer_tokens(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b) {
  if (&a == &b) return true;
  if (a.size() != b.size()) return false;
  for (size_t s = 0; s < a.size(); ++s)
    if (a[s].size() != b[s].size() || std::memcmp(a[s].data(), b[s].data(), a[s].size() * sizeof(double)) != 0)
      return false;
  return true;
}

std::unique_ptr<Placer> make_balanced_placer() { return std::make_unique<BalancedPlacer>(); }

}  // namespace moe
