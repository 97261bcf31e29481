// Expected per-layer load and link traffic of a placement, with the runtime's replica rule.
#include "placement/plan_metrics.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace moe {

void split_over_replicas(const LayerPlacement& lp, int expert, int src_rank, const Topology& topo, double count,
                         std::vector<ReplicaShare>& out) {
  out.clear();
  const auto& reps = lp.replicas.at(expert);
  MOE_REQUIRE(!reps.empty(), "expert " + std::to_string(expert) + " has no replica");
  if (reps.size() == 1) {
    out.push_back({reps[0], count});
    return;
  }
  // Link class as Topology::link (self < intra-node < inter-node), inlined: this runs per
  // (source, expert) over whole clusters.
  const int gpn = topo.gpus_per_node(), src_node = src_rank / gpn;
  auto link_class = [&](int r) { return r == src_rank ? 0 : r / gpn == src_node ? 1 : 2; };
  int best_class = 3, m = 0;
  for (int r : reps) {
    const int c = link_class(r);
    if (c < best_class) best_class = c, m = 0;
    m += c == best_class;
  }
  int i = 0;
  for (int r : reps)  // ascending ranks: ties go to the lower rank
    if (link_class(r) == best_class) out.push_back({r, replica_share(count, m, i++)});
}

double balancedness_of(const std::vector<double>& loads) {
  if (loads.empty()) return 1;
  double sum = 0, mx = 0;
  for (double x : loads) sum += x, mx = std::max(mx, x);
  return mx > 0 ? sum / loads.size() / mx : 1;
}

PlanMetrics compute_plan_metrics(const LayerPlacement& lp, const Topology& topo, int nics_per_node,
                                 double bytes_per_row, const std::vector<std::vector<double>>& tokens) {
  const int G = topo.num_ranks();
  const int E = lp.num_experts;
  const int nics = std::max(1, nics_per_node);
  const int gpn = topo.gpus_per_node();  // ranks are node-major (topology.hpp)
  MOE_REQUIRE(lp.num_ranks == G, "plan metrics: placement ranks != topology ranks");
  MOE_REQUIRE(static_cast<int>(tokens.size()) == G, "plan metrics: tokens must have one row per source rank");
  PlanMetrics m;
  m.tokens_per_gpu.assign(G, 0);
  m.nic_bytes.assign(static_cast<size_t>(topo.nodes()) * nics, 0);
  m.port_bytes.assign(G, 0);
  for (int s = 0; s < G; ++s)
    MOE_REQUIRE(static_cast<int>(tokens[s].size()) == E, "plan metrics: tokens row has the wrong number of experts");
  // Expert-major walk with split_over_replicas' rule unrolled per node: the replicas of e on node n
  // are a contiguous run of its (rank-sorted) list; sources on a node with a run use it (their own
  // rank first), the others split over all replicas.
  auto send = [&](int s, int r, double rows) {
    m.tokens_per_gpu[r] += rows;
    if (r == s) return;  // served on its own rank: no link
    const double b = rows * bytes_per_row;
    const int s_node = s / gpn, r_node = r / gpn;
    if (r_node == s_node) {
      m.intra_node_bytes += 2 * b;
      m.port_bytes[s] += b;  // dispatch
      m.port_bytes[r] += b;  // combine
    } else {
      m.inter_node_bytes += 2 * b;
      m.nic_bytes[size_t(s_node) * nics + (s % gpn) % nics] += b;
      m.nic_bytes[size_t(r_node) * nics + (r % gpn) % nics] += b;
    }
  };
  for (int e = 0; e < E; ++e) {
    const std::vector<int>& reps = lp.replicas.at(e);
    MOE_REQUIRE(!reps.empty() && std::is_sorted(reps.begin(), reps.end()),
                "plan metrics: expert " + std::to_string(e) + " needs replicas in ascending rank order");
    const int all = static_cast<int>(reps.size());
    size_t next = 0;
    for (int n = 0; n < topo.nodes(); ++n) {
      while (next < reps.size() && reps[next] / gpn < n) ++next;
      size_t end = next;
      while (end < reps.size() && reps[end] / gpn == n) ++end;
      const int* cand = end > next ? &reps[next] : reps.data();
      const int num = end > next ? static_cast<int>(end - next) : all;
      for (int s = n * gpn; s < (n + 1) * gpn; ++s) {
        const double t = tokens[s][e];
        if (t <= 0) continue;
        if (end > next && std::find(cand, cand + num, s) != cand + num) {
          send(s, s, t);
          continue;
        }
        for (int i = 0; i < num; ++i) send(s, cand[i], replica_share(t, num, i));
      }
    }
  }
  m.balancedness = balancedness_of(m.tokens_per_gpu);
  for (size_t i = 0; i < m.nic_bytes.size(); ++i)
    if (m.nic_bytes[i] > m.max_inter_link_bytes) m.max_inter_link_bytes = m.nic_bytes[i], m.busiest_nic = static_cast<int>(i);
  for (int r = 0; r < G; ++r)
    if (m.port_bytes[r] > m.max_intra_link_bytes) m.max_intra_link_bytes = m.port_bytes[r], m.busiest_port = r;
  return m;
}

std::vector<std::vector<double>> expected_dispatch_rows(const LayerPlacement& lp, const Topology& topo,
                                                        const std::vector<std::vector<double>>& tokens) {
  const int G = topo.num_ranks();
  MOE_REQUIRE(static_cast<int>(tokens.size()) == G, "expected rows: tokens must have one row per source rank");
  std::vector<std::vector<double>> rows(G, std::vector<double>(G, 0));
  std::vector<ReplicaShare> shares;
  for (int s = 0; s < G; ++s)
    for (int e = 0; e < lp.num_experts; ++e) {
      if (tokens[s].at(e) <= 0) continue;
      split_over_replicas(lp, e, s, topo, tokens[s][e], shares);
      for (const ReplicaShare& sh : shares) rows[s][sh.rank] += sh.rows;
    }
  return rows;
}

}  // namespace moe
