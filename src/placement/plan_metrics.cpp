// Expected per-layer load and link traffic of a placement, with the runtime's replica rule.
#include "placement/plan_metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

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

namespace {

// A pending run of sources p0, p0 + 1, ... each sending `count` rows, dealt over m candidates with
// add_deal_run once the run ends: whole rows for every candidate plus per-candidate parts and a
// difference array of the arcs.
struct DealRun {
  std::vector<double> part, diff;
  double whole = 0, count = 0;
  int64_t p0 = 0, len = 0;
  int m = 0;
  void reset(int num) {
    part.assign(num, 0);
    diff.assign(num + 1, 0);
    whole = 0, len = 0, m = num;
  }
  void add(double t, int64_t p, int64_t sources = 1) {
    if (len > 0 && p == p0 + len && std::memcmp(&t, &count, sizeof t) == 0) {
      len += sources;
      return;
    }
    flush();
    count = t, p0 = p, len = sources;
  }
  void flush() {
    if (len > 0) add_deal_run(count, double(len), m, double(p0), whole, part.data(), diff.data());
    len = 0;
  }
  // Rows dealt to candidate i, for i = 0, 1, ... in order (`run` carries the difference array's sum).
  double rows_at(int i, double& run) const { return whole + part[i] + (run += diff[i]); }
};

// One layer's walk: the metrics so far and the rows each source sends over NVLink and off-node.
// Expert-major, with replica_candidates' rule unrolled per node: the replicas of e on node n are a
// contiguous run of its (rank-sorted) list; sources on a node with a run use it (their own rank
// first; the others numbered among the node's non-hosting ranks), the sources of the nodes without
// one split over all replicas, numbered over those nodes in rank order. Deals accumulate with
// add_deal, one per run of consecutive sources sending equal rows (add_deal_run), and the replicas'
// rows are read off once per node with replicas and once per expert for the far sources:
// O(G * E + replicas) per layer. A non-hosting source sends all its rows over one link class:
// dispatch bytes on its own port or NIC, combine bytes on each serving replica's.
struct MetricsWalk {
  const LayerPlacement& lp;
  const Topology& topo;
  const std::vector<std::vector<double>>& tokens;   // [G][E]
  double bytes_per_row;
  int G, E, gpn;
  std::vector<size_t> nic_of;                         // [G]
  std::vector<double> near_sent, far_sent;            // [G] rows each source sends over NVLink / off-node
  PlanMetrics m;
  DealRun far, loc;

  MetricsWalk(const LayerPlacement& l, const Topology& t, int nics, double bpr, const std::vector<std::vector<double>>& tok)
      : lp(l), topo(t), tokens(tok), bytes_per_row(bpr), G(t.num_ranks()), E(l.num_experts),
        gpn(t.gpus_per_node()),  // ranks are node-major (topology.hpp)
        nic_of(G), near_sent(G, 0), far_sent(G, 0) {
    m.tokens_per_gpu.assign(G, 0);
    m.nic_bytes.assign(static_cast<size_t>(topo.nodes()) * nics, 0);
    m.port_bytes.assign(G, 0);
    for (int r = 0; r < G; ++r) nic_of[r] = size_t(r / gpn) * nics + (r % gpn) % nics;
  }

  // Node n holds the replicas cand[0, num) of e: its own rank serves a hosting source, the others
  // deal over the node's replicas through NVLink.
  void near_node(int e, int n, const int* cand, int num) {
    loc.reset(num);
    bool any = false;
    int hosts_below = 0;
    for (int s = n * gpn; s < (n + 1) * gpn; ++s) {
      const double t = tokens[s][e];
      const bool hosts = std::find(cand, cand + num, s) != cand + num;
      const int64_t p = s - n * gpn - hosts_below;
      hosts_below += hosts;
      if (t <= 0) continue;
      if (hosts) {  // served on its own rank: no link
        m.tokens_per_gpu[s] += t;
        continue;
      }
      loc.add(t, p);
      near_sent[s] += t;
      any = true;
    }
    if (!any) return;
    loc.flush();
    double run = 0;
    for (int i = 0; i < num; ++i) {
      const double rows = loc.rows_at(i, run);
      m.tokens_per_gpu[cand[i]] += rows;
      m.port_bytes[cand[i]] += rows * bytes_per_row;  // combine
    }
  }

  // Node n holds no replica of e (the far_nodes-th such node): its sources deal over every replica,
  // off-node. A node whose sources all send e the same rows is one block. Returns whether any did.
  bool far_node(int e, int n, int far_nodes) {
    const double t0 = tokens[n * gpn][e];
    bool even = t0 > 0;
    for (int s = n * gpn + 1; s < (n + 1) * gpn && even; ++s) even = std::memcmp(&tokens[s][e], &t0, sizeof t0) == 0;
    if (even) {
      far.add(t0, int64_t(far_nodes) * gpn, gpn);
      for (int s = n * gpn; s < (n + 1) * gpn; ++s) far_sent[s] += t0;
      return true;
    }
    bool any = false;
    for (int s = n * gpn; s < (n + 1) * gpn; ++s) {
      const double t = tokens[s][e];
      if (t <= 0) continue;
      far.add(t, int64_t(far_nodes) * gpn + (s - n * gpn));
      far_sent[s] += t;
      any = true;
    }
    return any;
  }

  void expert(int e) {
    const std::vector<int>& reps = lp.replicas.at(e);
    MOE_REQUIRE(!reps.empty() && std::is_sorted(reps.begin(), reps.end()),
                "plan metrics: expert " + std::to_string(e) + " needs replicas in ascending rank order");
    const int all = static_cast<int>(reps.size());
    far.reset(all);
    bool any_far = false;
    size_t next = 0;
    int far_nodes = 0;  // nodes before n holding no replica of e
    for (int n = 0; n < topo.nodes(); ++n) {
      while (next < reps.size() && reps[next] / gpn < n) ++next;
      size_t end = next;
      while (end < reps.size() && reps[end] / gpn == n) ++end;
      if (end > next) {
        near_node(e, n, &reps[next], static_cast<int>(end - next));
      } else {
        any_far = far_node(e, n, far_nodes) || any_far;
        ++far_nodes;
      }
    }
    if (!any_far) return;
    far.flush();
    double run = 0;
    for (int i = 0; i < all; ++i) {
      const double rows = far.rows_at(i, run);
      m.tokens_per_gpu[reps[i]] += rows;
      m.nic_bytes[nic_of[reps[i]]] += rows * bytes_per_row;  // combine
    }
  }

  // Dispatch bytes of every source, then balancedness and the busiest links.
  void finish() {
    for (int s = 0; s < G; ++s) {
      const double near_b = near_sent[s] * bytes_per_row, far_b = far_sent[s] * bytes_per_row;
      m.intra_node_bytes += 2 * near_b;
      m.port_bytes[s] += near_b;
      m.inter_node_bytes += 2 * far_b;
      m.nic_bytes[nic_of[s]] += far_b;
    }
    m.balancedness = balancedness_of(m.tokens_per_gpu);
    for (size_t i = 0; i < m.nic_bytes.size(); ++i)
      if (m.nic_bytes[i] > m.max_inter_link_bytes) m.max_inter_link_bytes = m.nic_bytes[i], m.busiest_nic = static_cast<int>(i);
    for (int r = 0; r < G; ++r)
      if (m.port_bytes[r] > m.max_intra_link_bytes) m.max_intra_link_bytes = m.port_bytes[r], m.busiest_port = r;
  }
};

}  // namespace

PlanMetrics compute_plan_metrics(const LayerPlacement& lp, const Topology& topo, int nics_per_node,
                                 double bytes_per_row, const std::vector<std::vector<double>>& tokens) {
  const int G = topo.num_ranks();
  MOE_REQUIRE(lp.num_ranks == G, "plan metrics: placement ranks != topology ranks");
  MOE_REQUIRE(static_cast<int>(tokens.size()) == G, "plan metrics: tokens must have one row per source rank");
  for (int s = 0; s < G; ++s)
    MOE_REQUIRE(static_cast<int>(tokens[s].size()) == lp.num_experts,
                "plan metrics: tokens row has the wrong number of experts");
  MetricsWalk walk(lp, topo, std::max(1, nics_per_node), bytes_per_row, tokens);
  for (int e = 0; e < lp.num_experts; ++e) walk.expert(e);
  walk.finish();
  return std::move(walk.m);
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
