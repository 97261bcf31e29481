// Expected per-layer load and link traffic of a placement, with the runtime's replica rule.
#include "placement/plan_metrics.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace moe {

void split_over_replicas(const LayerPlacement& lp, int expert, int src_rank, const Topology& topo, double count,
                         std::vector<ReplicaShare>& out) {
  out.clear();
  const ReplicaCandidates c = replica_candidates(lp, expert, src_rank, topo);
  const int* cand = lp.replicas[expert].data() + c.first;
  const double start = replica_start(double(c.source_index), count, c.count);
  for (int i = 0; i < c.count; ++i) out.push_back({cand[i], replica_share(count, c.count, i, start)});
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
  // Expert-major walk with replica_candidates' rule unrolled per node: the replicas of e on node n
  // are a contiguous run of its (rank-sorted) list; sources on a node with a run use it (their own
  // rank first; the others numbered among the node's non-hosting ranks), the sources of the nodes
  // without one split over all replicas, numbered over those nodes in rank order.
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
    int far_nodes = 0;  // nodes before n holding no replica of e
    for (int n = 0; n < topo.nodes(); ++n) {
      while (next < reps.size() && reps[next] / gpn < n) ++next;
      size_t end = next;
      while (end < reps.size() && reps[end] / gpn == n) ++end;
      const bool near = end > next;
      const int* cand = near ? &reps[next] : reps.data();
      const int num = near ? static_cast<int>(end - next) : all;
      int hosts_below = 0;
      for (int s = n * gpn; s < (n + 1) * gpn; ++s) {
        const double t = tokens[s][e];
        const bool hosts = near && std::find(cand, cand + num, s) != cand + num;
        const int64_t p = near ? s - n * gpn - hosts_below : int64_t(far_nodes) * gpn + (s - n * gpn);
        hosts_below += hosts;
        if (t <= 0) continue;
        if (hosts) {
          send(s, s, t);
          continue;
        }
        const double start = replica_start(double(p), t, num);
        for (int i = 0; i < num; ++i) send(s, cand[i], replica_share(t, num, i, start));
      }
      far_nodes += !near;
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
