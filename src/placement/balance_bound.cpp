// Water-filling replica counts and the balancedness bound they give (balance_bound.hpp).
#include "placement/balance_bound.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include "core/error.hpp"

namespace moe {

BalanceBound best_balancedness_bound(const std::vector<double>& loads, int slots) {
  const int E = static_cast<int>(loads.size());
  MOE_REQUIRE(E > 0 && slots >= E, "balance bound: needs 1 <= experts <= slots (one expert per GPU), got " +
                                       std::to_string(E) + " experts on " + std::to_string(slots) + " slots");
  double total = 0;
  for (double w : loads) {
    MOE_REQUIRE(w >= 0, "balance bound: loads must be non-negative");
    total += w;
  }
  BalanceBound b;
  b.replicas.assign(E, 1);
  // Greedy is optimal: the largest load per replica can only fall by giving its expert a replica, and
  // an exchange argument shows no other allocation of the same number of slots has a smaller maximum.
  // A heap by (load per replica descending, expert ascending) picks the first maximum of a scan.
  std::vector<std::pair<double, int>> heap;  // (load / replicas, expert)
  auto below = [](const std::pair<double, int>& a, const std::pair<double, int>& c) {
    return a.first != c.first ? a.first < c.first : a.second > c.second;
  };
  for (int e = 0; e < E; ++e) heap.push_back({loads[e] / b.replicas[e], e});
  std::make_heap(heap.begin(), heap.end(), below);
  for (int spare = slots - E; spare > 0; --spare) {
    std::pop_heap(heap.begin(), heap.end(), below);
    const int top = heap.back().second;
    ++b.replicas[top];
    heap.back() = {loads[top] / b.replicas[top], top};
    std::push_heap(heap.begin(), heap.end(), below);
  }
  for (int e = 0; e < E; ++e) b.max_per_replica = std::max(b.max_per_replica, loads[e] / b.replicas[e]);
  b.mean_per_slot = total / slots;
  b.balancedness = b.max_per_replica > 0 ? b.mean_per_slot / b.max_per_replica : 1;
  return b;
}

double same_node_first_bound(const std::vector<double>& loads, int slots, int nodes) {
  const int E = static_cast<int>(loads.size());
  MOE_REQUIRE(E > 0 && slots >= E && nodes > 0, "same-node-first bound: needs 1 <= experts <= slots and nodes > 0");
  double total = 0;
  for (double w : loads) {
    MOE_REQUIRE(w >= 0, "same-node-first bound: loads must be non-negative");
    total += w;
  }
  if (total <= 0) return 1;
  auto per_replica = [&](double w, int c) { return c <= nodes ? w / c : w / (double(nodes) * (c / nodes)); };
  // Fewest slots that bring every expert's per-replica load to <= cap (non-increasing in c).
  auto slots_needed = [&](double cap) {
    int64_t need = 0;
    for (double w : loads) {
      int c = 1;
      while (c < slots && per_replica(w, c) > cap) ++c;
      if (per_replica(w, c) > cap) return int64_t(slots) + 1;
      need += c;
    }
    return need;
  };
  double lo = 0, hi = total;
  for (int i = 0; i < 200 && hi - lo > 1e-12 * hi; ++i) {
    const double mid = (lo + hi) / 2;
    (slots_needed(mid) <= slots ? hi : lo) = mid;
  }
  return total / slots / hi;
}

}  // namespace moe
