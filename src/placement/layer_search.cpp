// The link loads of one layer's placement during the topology-aware search (see layer_search.hpp):
// built once from the placement and the expected routing, then updated by each slot swap.
#include "placement/layer_search.hpp"

#include <algorithm>
#include <cmath>

#include "placement/plan_metrics.hpp"

namespace moe {

bool improves(const Objective& a, const Objective& b) {
  const double eps_nic = 1e-9 * (1 + b.max_nic), eps_port = 1e-9 * (1 + b.max_port);
  if (a.max_nic < b.max_nic - eps_nic) return true;
  // Within the tolerance the maximum must not rise at all, so ties never drift it upwards.
  if (a.max_nic > b.max_nic) return false;
  if (a.at_max != b.at_max) return a.at_max < b.at_max;
  return a.max_port < b.max_port - eps_port;
}

LayerSearch::LayerSearch(const Topology& topo, int nics, const std::vector<std::vector<double>>& tokens, const LayerPlacement& lp)
    : G_(topo.num_ranks()), N_(topo.nodes()), gpn_(topo.gpus_per_node()), nics_(nics), E_(lp.num_experts), t_(tokens) {
  spg_ = std::max(1, lp.max_slots());
  slot_.assign(size_t(G_) * spg_, -1);
  reps_.assign(E_, {});
  on_node_.assign(size_t(E_) * N_, 0);
  for (int r = 0; r < G_; ++r)
    for (size_t i = 0; i < lp.slots[r].size(); ++i) {
      const int e = lp.slots[r][i];
      slot_[size_t(r) * spg_ + i] = e;
      reps_[e].push_back(r);
      ++on_node_[size_t(e) * N_ + r / gpn_];
    }
  for (auto& r : reps_) std::sort(r.begin(), r.end());
  nic_of_.resize(G_);
  for (int r = 0; r < G_; ++r) nic_of_[r] = (r / gpn_) * nics_ + (r % gpn_) % nics_;
  node_demand_.assign(size_t(E_) * N_, 0);
  rail_.assign(size_t(N_) * nics_ * E_, 0);
  for (int s = 0; s < G_; ++s) {
    const std::vector<double>& row = t_[s];
    double* rail = &rail_[size_t(nic_of_[s]) * E_];
    for (int e = 0; e < E_; ++e) node_demand_[size_t(e) * N_ + s / gpn_] += row[e], rail[e] += row[e];
  }
  // Nodes whose sources all send e the same rows (bitwise), and where each run of equal nodes ends.
  node_rows_.assign(size_t(E_) * N_, 0);
  node_even_.assign(size_t(E_) * N_, 1);
  segment_end_.assign(size_t(E_) * N_, 0);
  node_full_.assign(size_t(E_) * N_, 0);
  node_rest_.assign(size_t(E_) * N_, 0);
  for (int n = 0; n < N_; ++n)
    for (int e = 0; e < E_; ++e) {
      const double t = t_[n * gpn_][e];
      bool even = true;
      for (int s = n * gpn_ + 1; s < (n + 1) * gpn_ && even; ++s) even = same_bits(t_[s][e], t);
      const double m = double(reps_[e].size()), full = std::floor(t / m);
      node_rows_[size_t(e) * N_ + n] = t;
      node_even_[size_t(e) * N_ + n] = even;
      node_full_[size_t(e) * N_ + n] = full;
      node_rest_[size_t(e) * N_ + n] = t - full * m;
    }
  for (int e = 0; e < E_; ++e)
    for (int n = N_ - 1; n >= 0; --n) {
      const size_t i = size_t(e) * N_ + n;
      const bool joins = n + 1 < N_ && node_even_[i] && node_even_[i + 1] && same_bits(node_rows_[i], node_rows_[i + 1]);
      segment_end_[i] = joins ? segment_end_[i + 1] : n + 1;
    }
  recv_.assign(G_, 0);
  disp_inter_ = comb_inter_ = disp_intra_ = comb_intra_ = recv_;
  nic_.assign(size_t(N_) * nics_, 0);
  far_rows_.assign(E_, {});
  undo_reps_.assign(E_, {});
  undo_rows_.assign(E_, {});
  for (int e = 0; e < E_; ++e) {
    compute_far(e);
    apply_far(e, +1);
    for (int n = 0; n < N_; ++n) {
      if (on_node_[size_t(e) * N_ + n] == 0) far_dispatch(e, n, +1);
      else local_part(e, n, +1);
    }
  }
  total_rows_ = 0;
  for (double x : recv_) total_rows_ += x;
}

// `reject_above`: stop after the busiest NIC when it carries more (improves() is then false).
Objective LayerSearch::measure(double reject_above) const {
  Objective o;
  for (double x : nic_) o.max_nic = std::max(o.max_nic, x);
  if (o.max_nic > reject_above) return o;
  const double tol = 1e-9 * (1 + o.max_nic);
  for (double x : nic_) o.at_max += x >= o.max_nic - tol;
  double mx = 0;
  for (int r = 0; r < G_; ++r) {
    o.max_port = std::max(o.max_port, disp_intra_[r] + comb_intra_[r]);
    mx = std::max(mx, recv_[r]);
  }
  o.balancedness = mx > 0 ? total_rows_ / G_ / mx : 1;
  return o;
}

LayerPlacement LayerSearch::result() const {
  LayerPlacement lp;
  lp.num_experts = E_;
  lp.num_ranks = G_;
  lp.slots.assign(G_, {});
  lp.replicas = reps_;
  for (int r = 0; r < G_; ++r)
    for (int i = 0; i < spg_; ++i)
      if (slot_[size_t(r) * spg_ + i] >= 0) lp.slots[r].push_back(slot_[size_t(r) * spg_ + i]);
  return lp;
}

// Node n's sources send e's rows off-node (n holds no replica of e): dispatch side only.
void LayerSearch::far_dispatch(int e, int n, double sign) {
  for (int s = n * gpn_; s < (n + 1) * gpn_; ++s) {
    const double x = sign * t_[s][e];
    disp_inter_[s] += x;
    nic_[nic_of_[s]] += x;
  }
}

// Deals the far sources of nodes [a, b) (all far, d replica nodes before them) over e's m replicas
// into far_whole_ / far_part_ / far_diff_: one arc per segment of equal nodes (add_deal).
void LayerSearch::far_gap(int e, int a, int b, int d, int m) {
  for (int n = a; n < b;) {
    const size_t i = size_t(e) * N_ + n;
    if (!node_even_[i]) {
      for (int s = n * gpn_; s < (n + 1) * gpn_; ++s) {
        const double t = t_[s][e];
        if (t <= 0) continue;
        const double start = replica_start(double(n - d) * gpn_ + (s - n * gpn_), t, m);
        add_deal(t, m, start, far_whole_, far_part_.data(), far_diff_.data());
      }
      ++n;
      continue;
    }
    const int stop = std::min(segment_end_[i], b);
    const double t = node_rows_[i];
    if (t > 0) {  // add_deal_run with floor(t / m) and the rest precomputed
      const double sources = double(stop - n) * gpn_;
      far_whole_ += sources * node_full_[i];
      add_deal(sources * node_rest_[i], m, replica_start(double(n - d) * gpn_, t, m), far_whole_, far_part_.data(),
               far_diff_.data());
    }
    n = stop;
  }
}

// Rows from the nodes holding no replica of e, dealt over all replicas by position (d = replica
// nodes before each gap of far nodes), into far_rows_[e].
void LayerSearch::compute_far(int e) {
  const std::vector<int>& reps = reps_[e];
  const int m = static_cast<int>(reps.size());
  far_whole_ = 0;
  far_part_.assign(m, 0);
  far_diff_.assign(m + 1, 0);
  int d = 0, gap_start = 0;
  for (int i = 0; i < m; ++i) {  // reps are node-sorted: once per node holding replicas
    const int n = node_of(reps[i]);
    if (i > 0 && n == node_of(reps[i - 1])) continue;
    if (n > gap_start) far_gap(e, gap_start, n, d, m);
    ++d;
    gap_start = n + 1;
  }
  far_gap(e, gap_start, N_, d, m);
  std::vector<double>& rows = far_rows_[e];
  rows.resize(m);
  double run = 0;
  for (int i = 0; i < m; ++i) rows[i] = far_whole_ + far_part_[i] + (run += far_diff_[i]);
}

// Adds (sign +1) or removes far_rows_[e] at e's replicas, position by position: received rows and
// their combine off-node.
void LayerSearch::apply_far(int e, double sign) {
  const std::vector<int>& reps = reps_[e];
  const std::vector<double>& rows = far_rows_[e];
  for (size_t i = 0; i < reps.size(); ++i) {
    const double x = sign * rows[i];
    if (x == 0) continue;
    const int r = reps[i];
    recv_[r] += x;
    comb_inter_[r] += x;
    nic_[nic_of_[r]] += x;
  }
}

// Sources of node n when it holds replicas of e: own rank, else split over the node's replicas
// via NVLink. Nothing when n holds none (its sources are far).
void LayerSearch::local_part(int e, int n, double sign) {
  const std::vector<int>& reps = reps_[e];
  const auto first = std::lower_bound(reps.begin(), reps.end(), n * gpn_);
  const auto last = std::lower_bound(first, reps.end(), (n + 1) * gpn_);
  const int m = static_cast<int>(last - first);
  if (m == 0) return;
  const int* local = &*first;
  double whole = 0;
  loc_part_.assign(m, 0);
  loc_diff_.assign(m + 1, 0);
  int hosts_below = 0;  // rotation index of a source: its position among the node's non-hosting ranks
  for (int s = n * gpn_; s < (n + 1) * gpn_; ++s) {
    const double t = t_[s][e];
    const bool hosts = std::find(local, local + m, s) != local + m;
    const int p = s - n * gpn_ - hosts_below;
    hosts_below += hosts;
    if (t <= 0) continue;
    if (hosts) {
      recv_[s] += sign * t;
      continue;
    }
    add_deal(t, m, replica_start(p, t, m), whole, loc_part_.data(), loc_diff_.data());
    disp_intra_[s] += sign * t;
  }
  double run = 0;
  for (int i = 0; i < m; ++i) {
    const double x = sign * (whole + loc_part_[i] + (run += loc_diff_[i]));
    if (x == 0) continue;
    recv_[local[i]] += x;
    comb_intra_[local[i]] += x;
  }
}

// Only the far split and the two nodes involved change; other replica nodes keep their sources.
// The far rows by position depend only on which nodes hold replicas: they are recomputed only when
// that set changes, and a move that restores the replica list before the last recomputation (a
// rejected swap undone) takes the rows saved then.
void LayerSearch::move_expert(int e, int from, int to) {
  const int nf = node_of(from), nt = node_of(to);
  apply_far(e, -1);
  local_part(e, nf, -1);
  if (nt != nf) local_part(e, nt, -1);
  auto& r = reps_[e];
  const std::vector<int> before = r;
  r.erase(std::find(r.begin(), r.end(), from));
  r.insert(std::lower_bound(r.begin(), r.end(), to), to);
  bool nodes_change = false;
  if (nf != nt) {
    if (--on_node_[size_t(e) * N_ + nf] == 0) far_dispatch(e, nf, +1), nodes_change = true;
    if (on_node_[size_t(e) * N_ + nt]++ == 0) far_dispatch(e, nt, -1), nodes_change = true;
  }
  if (nodes_change) {
    if (undo_reps_[e] == r) {
      std::swap(far_rows_[e], undo_rows_[e]);
    } else {
      undo_rows_[e] = far_rows_[e];
      compute_far(e);
    }
    undo_reps_[e] = before;
  }
  apply_far(e, +1);
  local_part(e, nf, +1);
  if (nt != nf) local_part(e, nt, +1);
}

// Swaps the experts of two slots (either may be empty); applying it twice restores the state.
void LayerSearch::swap_slots(int sa, int sb) {
  const int ea = slot_[sa], eb = slot_[sb];
  if (ea >= 0) move_expert(ea, rank_of(sa), rank_of(sb));
  if (eb >= 0) move_expert(eb, rank_of(sb), rank_of(sa));
  std::swap(slot_[sa], slot_[sb]);
}

// A swap must move two different experts and never put two copies of one expert on a rank.
bool LayerSearch::valid(int sa, int sb) const {
  const int ea = slot_[sa], eb = slot_[sb], ra = rank_of(sa), rb = rank_of(sb);
  if (ea == eb || ra == rb) return false;
  if (ea >= 0 && hosts(rb, ea)) return false;
  if (eb >= 0 && hosts(ra, eb)) return false;
  return true;
}

}  // namespace moe
