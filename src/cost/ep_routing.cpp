// Expert-parallel flows of a layer for the cost model: from expert shares (every source alike, spread
// evenly over the nearest replicas) or from per-source assignments (split_over_replicas, the runtime's
// replica deal, so integer counts give the runtime's exact rows per link). With expert_tp > 1 the
// placement holds shards (shard_placement): every assignment to expert e is one row to each shard
// e * expert_tp + m, as ep.cpp's shard_routing dispatches it.
#include "cost/ep_routing.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "placement/plan_metrics.hpp"
#include "routing/router.hpp"

namespace moe {

// Expected assignments per token to each expert of a layer (sums to k), with the capacity applied.
std::vector<double> assignments_per_token(const Config& c, const StrategyConfig& s, const ExpectedRouting& r, int layer,
                                          int64_t step_tokens) {
  const int E = c.model.experts, k = c.model.top_k;
  std::vector<double> share(E, 1.0 / E);
  if (!r.expert_share.empty()) {
    MOE_REQUIRE(static_cast<int>(r.expert_share.size()) == c.model.layers &&
                    static_cast<int>(r.expert_share[layer].size()) == E,
                "expected routing: expert_share must be [layers][experts]");
    double sum = 0;
    for (double x : r.expert_share[layer]) sum += x;
    MOE_REQUIRE(sum > 0, "expected routing: shares of layer " + std::to_string(layer) + " sum to 0");
    for (int e = 0; e < E; ++e) share[e] = r.expert_share[layer][e] / sum;
  }
  const int64_t cap = expert_capacity(s.load_balancing.capacity_factor, step_tokens, k, E);
  std::vector<double> a(E);
  for (int e = 0; e < E; ++e) {
    a[e] = share[e] * k;
    const double expected = a[e] * double(step_tokens);
    if (cap >= 0 && expected > double(cap)) a[e] *= double(cap) / expected;  // later assignments dropped
  }
  return a;
}

// ---- expert-parallel routing per layer: flows per local token of every rank ----

void CostModel::EpRouting::begin(int ranks, int slots) {
  max_slots = std::max(1, slots);
  slot_rows.assign(static_cast<size_t>(ranks) * max_slots, 0.0);
  recv_rows.assign(ranks, 0.0);
  for (auto* v : {&sent_intra, &sent_inter, &recv_intra, &recv_inter}) v->assign(ranks, 0.0);
}

void CostModel::EpRouting::add_flow(const Topology& topo, int src, int dst, int slot, double w, std::vector<int>& seen,
                                    int& peers_of_src) {
  slot_rows[static_cast<size_t>(dst) * max_slots + slot] += w;
  recv_rows[dst] += w;
  if (dst == src || w <= 0) return;
  if (topo.link(src, dst) == LinkClass::intra_node) {
    sent_intra[src] += w;
    recv_intra[dst] += w;
  } else {
    sent_inter[src] += w;
    recv_inter[dst] += w;
    crosses_nodes = true;
  }
  if (seen[dst] != src) {
    seen[dst] = src;
    ++peers_of_src;
  }
}

void CostModel::EpRouting::finish(const Topology& topo, int nics) {
  nics = std::max(1, nics);
  dispatch = std::make_shared<LinkLoads>(topo, nics);
  combine = std::make_shared<LinkLoads>(topo, nics);
  for (int r = 0; r < topo.num_ranks(); ++r) {
    const size_t nic = static_cast<size_t>(topo.node_of(r)) * nics + topo.gpu_of(r) % nics;
    dispatch->port_sent[r] = combine->port_recv[r] = sent_intra[r];
    dispatch->port_recv[r] = combine->port_sent[r] = recv_intra[r];
    dispatch->nic_sent[nic] += sent_inter[r];
    dispatch->nic_recv[nic] += recv_inter[r];
    combine->nic_sent[nic] += recv_inter[r];
    combine->nic_recv[nic] += sent_inter[r];
    dispatch->intra_bytes += sent_intra[r];
    dispatch->inter_bytes += sent_inter[r];
  }
  combine->intra_bytes = dispatch->intra_bytes;
  combine->inter_bytes = dispatch->inter_bytes;
}

namespace {
bool same_placement(const LayerPlacement& a, const LayerPlacement& b) { return a.replicas == b.replicas && a.slots == b.slots; }
}  // namespace

std::shared_ptr<const CostModel::EpRouting> CostModel::ep_routing(int layer, int step_idx, int64_t rows,
                                                                  int64_t step_tokens) const {
  if (const SourceAssignments* sources = sources_of_step(step_idx)) return ep_routing_sources(layer, *sources, rows);
  // Without a capacity the expected routing does not depend on the step's token count.
  const bool dropless = spec_.load_balancing.capacity_factor <= 0;
  const int64_t key = dropless ? -1 : step_tokens;
  std::shared_ptr<const EpRouting>& cached = flows_[{layer, key}];
  if (cached) return cached;
  const std::vector<double> a = assignments_per_token(config_, spec_, options_.routing, layer, step_tokens);
  const LayerPlacement& lp = placement_->layers.at(layer);
  // Layers with the previous layer's placement and expected assignments have its flows.
  if (layer > 0 && same_placement(placement_->layers[layer - 1], lp)) {
    const auto prev = flows_.find({layer - 1, key});
    if (prev != flows_.end() && assignments_per_token(config_, spec_, options_.routing, layer - 1, step_tokens) == a)
      return cached = prev->second;
  }
  const int G = topo_.num_ranks(), E = lp.num_experts, etp = spec_.expert_tp;
  auto r = std::make_shared<EpRouting>();
  r->begin(G, lp.max_slots());
  for (double x : a) r->sent_rows += x * etp;
  std::vector<int> seen(G, -1);
  std::vector<int> candidates;
  for (int src = 0; src < G; ++src) {
    int peers = 0;
    for (int e = 0; e < E; ++e) {
      // choose_replica: the source's own rank, else its node's replicas, else all replicas; the
      // per-plan replica load spreads a source's assignments evenly over the chosen class.
      const auto& reps = lp.replicas[e];
      candidates.clear();
      if (lp.slot_of(src, e) >= 0) {
        candidates.push_back(src);
      } else {
        for (int q : reps)
          if (topo_.link(src, q) == LinkClass::intra_node) candidates.push_back(q);
        if (candidates.empty()) candidates = reps;
      }
      const double w = a[e / etp] / double(candidates.size());
      for (int dst : candidates) r->add_flow(topo_, src, dst, lp.slot_of(dst, e), w, seen, peers);
    }
    r->peers = std::max(r->peers, peers);
  }
  r->sent_rows_of.assign(G, r->sent_rows);
  r->busiest = static_cast<int>(std::max_element(r->recv_rows.begin(), r->recv_rows.end()) - r->recv_rows.begin());
  r->finish(topo_, nics_);
  cached = r;
  return r;
}

const SourceAssignments* CostModel::sources_of_step(int step_idx) const {
  const ExpectedRouting& r = options_.routing;
  if (!r.step_source_assignments.empty()) {
    MOE_REQUIRE(step_idx >= 0 && step_idx < static_cast<int>(r.step_source_assignments.size()),
                "expected routing: no per-source assignments for step " + std::to_string(step_idx) +
                    " (prefill = 0, decode step t = t + 1)");
    MOE_REQUIRE(r.step_source_assignments[step_idx] != nullptr,
                "expected routing: per-source assignments of step " + std::to_string(step_idx) + " are missing");
    return r.step_source_assignments[step_idx].get();
  }
  return r.source_assignments.get();
}

std::shared_ptr<const CostModel::EpRouting> CostModel::ep_routing_sources(int layer, const SourceAssignments& a,
                                                                          int64_t rows) const {
  const auto key = std::make_tuple(layer, &a, rows);
  if (auto it = by_source_.find(key); it != by_source_.end()) return it->second;
  const LayerPlacement& lp = placement_->layers.at(layer);
  const int G = topo_.num_ranks(), E = config_.model.experts, etp = spec_.expert_tp;
  MOE_REQUIRE(static_cast<int>(a.size()) == config_.model.layers && static_cast<int>(a[layer].size()) == G,
              "expected routing: source_assignments must be [layers][ranks][experts]");
  // Layers with the previous layer's placement and assignments have its flows.
  if (layer > 0 && same_placement(placement_->layers[layer - 1], lp) && a[layer - 1] == a[layer]) {
    const auto prev = by_source_.find(std::make_tuple(layer - 1, &a, rows));
    if (prev != by_source_.end()) return by_source_[key] = prev->second;
  }
  auto r = std::make_shared<EpRouting>();
  r->per_source = true;
  r->begin(G, lp.max_slots());
  r->sent_rows_of.assign(G, 0.0);
  const double per_row = rows > 0 ? 1.0 / double(rows) : 0.0;
  std::vector<int> seen(G, -1);
  std::vector<ReplicaShare> shares;
  for (int src = 0; src < G; ++src) {
    const std::vector<double>& row = a[layer][src];
    MOE_REQUIRE(static_cast<int>(row.size()) == E, "expected routing: source_assignments must be [layers][ranks][experts]");
    int peers = 0;
    for (int e = 0; e < E; ++e) {
      MOE_REQUIRE(row[e] >= 0 && std::isfinite(row[e]), "expected routing: source assignments must be finite and >= 0");
      // The step's count of this source; integral counts (a run's) are snapped to the integer the
      // runtime dealt, so the cyclic deal matches it exactly.
      double count = row[e] * double(rows);
      const double nearest = std::round(count);
      if (std::abs(count - nearest) <= 1e-9 * std::max(1.0, nearest)) count = nearest;
      if (count <= 0) continue;
      for (int shard = e * etp; shard < (e + 1) * etp; ++shard) {
        split_over_replicas(lp, shard, src, topo_, count, shares);
        for (const ReplicaShare& sh : shares) {
          if (sh.rows <= 0) continue;
          const double w = sh.rows * per_row;
          r->sent_rows_of[src] += w;
          r->add_flow(topo_, src, sh.rank, lp.slot_of(sh.rank, shard), w, seen, peers);
        }
      }
    }
    r->peers = std::max(r->peers, peers);
  }
  r->sent_rows = *std::max_element(r->sent_rows_of.begin(), r->sent_rows_of.end());
  r->busiest = static_cast<int>(std::max_element(r->recv_rows.begin(), r->recv_rows.end()) - r->recv_rows.begin());
  r->finish(topo_, nics_);
  by_source_[key] = r;
  return r;
}

}  // namespace moe
