// The "topology_aware" placer (paper §1.1): start from the balanced plan and swap the experts of two
// GPU slots while the bytes on the busiest inter-node link (NIC) fall, then those on the busiest
// NVLink port, under the expected routing from each source rank to each expert.
#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "placement/load_profile.hpp"
#include "placement/placers.hpp"
#include "placement/plan_metrics.hpp"

namespace moe {
namespace {

// Lexicographic search objective. `at_max` (NICs within tolerance of the maximum) lets the search
// leave plateaus where several links share the maximum: relieving one of them is progress.
struct Objective {
  double max_nic = 0;
  int at_max = 0;
  double max_port = 0;
  double balancedness = 1;
};

bool improves(const Objective& a, const Objective& b) {
  const double eps_nic = 1e-9 * (1 + b.max_nic), eps_port = 1e-9 * (1 + b.max_port);
  if (a.max_nic < b.max_nic - eps_nic) return true;
  // Within the tolerance the maximum must not rise at all, so ties never drift it upwards.
  if (a.max_nic > b.max_nic) return false;
  if (a.at_max != b.at_max) return a.at_max < b.at_max;
  return a.max_port < b.max_port - eps_port;
}

// Adds one source's cyclic deal (replica_share for every position) in O(1) plus the cells its arc
// spans: `whole` gets floor(count/m) for every position, `part` the partly covered cells and `diff`
// (size m + 1, a difference array) the runs of fully covered cells.
void add_deal(double count, int m, double start, double& whole, double* part, double* diff) {
  const double full = std::floor(count / m), rest = count - full * m;
  whole += full;
  auto cover = [&](double a, double b) {  // [a, b) within [0, m]
    if (b <= a) return;
    const int ia = static_cast<int>(a), ib = static_cast<int>(b);
    if (ia == ib) {
      part[ia] += b - a;
      return;
    }
    part[ia] += ia + 1 - a;
    diff[ia + 1] += 1;
    diff[ib] -= 1;
    if (ib < m) part[ib] += b - ib;
  };
  const double end = start + rest;
  cover(start, std::min(end, double(m)));
  if (end > m) cover(0, end - m);
}

struct Candidate {
  double score;   // predicted fall of the targeted link's load (rows)
  int slot_a, slot_b;
};

// One layer's search state, in rows. Replica choice is the runtime's (split_over_replicas in
// plan_metrics.hpp): a source whose node holds replicas of e uses those (its own rank first); a
// "far" source deals over all replicas, its rotation index counting the ranks of the far nodes
// before it. A far node's shares depend only on d, the number of replica nodes before it (its index
// among far nodes is n - d), so they are kept as prefix sums over nodes per d and position
// ([E][d <= min(m_e, N)][N + 1][m_e], m_e fixed because swaps keep replica counts): the far rows are
// one difference per run of far nodes between replica nodes, and moving one replica touches only
// the nodes that hold replicas and the two nodes whose far status changes, not every source.
class LayerSearch {
 public:
  LayerSearch(const Topology& topo, int nics, const std::vector<std::vector<double>>& tokens, const LayerPlacement& lp)
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
    // Far shares as prefix sums over nodes, per (expert, d, position), built on first use: experts
    // with a replica on every node never need them.
    far_offset_.assign(E_ + 1, 0);
    for (int e = 0; e < E_; ++e) far_offset_[e + 1] = far_offset_[e] + std::min<size_t>(reps_[e].size(), N_) + 1;
    far_prefix_.assign(far_offset_[E_], {});
    node_demand_.assign(size_t(E_) * N_, 0);
    for (int s = 0; s < G_; ++s)
      for (int e = 0; e < E_; ++e) node_demand_[size_t(e) * N_ + s / gpn_] += t_[s][e];
    recv_.assign(G_, 0);
    disp_inter_ = comb_inter_ = disp_intra_ = comb_intra_ = recv_;
    nic_.assign(size_t(N_) * nics_, 0);
    for (int e = 0; e < E_; ++e) {
      far_part(e, +1);
      for (int n = 0; n < N_; ++n) {
        if (on_node_[size_t(e) * N_ + n] == 0) far_dispatch(e, n, +1);
        else local_part(e, n, +1);
      }
    }
    total_rows_ = 0;
    for (double x : recv_) total_rows_ += x;
  }

  Objective measure() const {
    Objective o;
    for (double x : nic_) o.max_nic = std::max(o.max_nic, x);
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

  // Greedy descent: each round gathers swaps that should relieve the busiest NIC (else the busiest
  // NVLink port), evaluates the best estimates exactly and takes the first that improves the
  // objective without balancedness falling below `min_balancedness`.
  void run(int max_moves, int per_round, double min_balancedness) {
    Objective cur = measure();
    for (int move = 0; move < max_moves; ++move) {
      bool moved = false;
      if (cur.max_nic > 0) moved = try_round(nic_candidates(), per_round, min_balancedness, cur);
      if (!moved) moved = try_round(port_candidates(), per_round, min_balancedness, cur);
      if (!moved) break;
    }
  }

  LayerPlacement result() const {
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

 private:
  int rank_of(int slot) const { return slot / spg_; }
  int node_of(int rank) const { return rank / gpn_; }
  bool hosts(int rank, int e) const {
    for (int i = 0; i < spg_; ++i)
      if (slot_[size_t(rank) * spg_ + i] == e) return true;
    return false;
  }
  int hosted(int rank) const {
    int n = 0;
    for (int i = 0; i < spg_; ++i) n += slot_[size_t(rank) * spg_ + i] >= 0;
    return std::max(1, n);
  }

  // Node n's sources send e's rows off-node (n holds no replica of e): dispatch side only.
  void far_dispatch(int e, int n, double sign) {
    for (int s = n * gpn_; s < (n + 1) * gpn_; ++s) {
      const double x = sign * t_[s][e];
      disp_inter_[s] += x;
      nic_[nic_of_[s]] += x;
    }
  }

  // far_prefix_ of expert e: rows that nodes [0, n) would deal to each position if each had d
  // replica nodes before it (node n's far index is then n - d).
  const double* far_prefix(int e, int d, int n) {
    const int m = static_cast<int>(reps_[e].size());
    std::vector<double>& table = far_prefix_[far_offset_[e] + d];
    if (table.empty()) {
      table.assign(size_t(N_ + 1) * m, 0);
      double* pre = table.data();
      std::vector<double> part(m), diff(m + 1);
      for (int node = 0; node < N_; ++node) {
        const double* cur = pre + size_t(node) * m;
        double* nxt = pre + size_t(node + 1) * m;
        for (int i = 0; i < m; ++i) nxt[i] = cur[i];
        if (node < d) continue;  // never far with d replica nodes before it
        double whole = 0;
        std::fill(part.begin(), part.end(), 0.0);
        std::fill(diff.begin(), diff.end(), 0.0);
        for (int s = node * gpn_; s < (node + 1) * gpn_; ++s) {
          const double t = t_[s][e];
          if (t <= 0) continue;
          const double start = replica_start(double(node - d) * gpn_ + (s - node * gpn_), t, m);
          add_deal(t, m, start, whole, part.data(), diff.data());
        }
        double run = 0;
        for (int i = 0; i < m; ++i) nxt[i] += whole + part[i] + (run += diff[i]);
      }
    }
    return table.data() + size_t(n) * m;
  }

  // Rows from the nodes holding no replica of e, dealt over all replicas by position, and their
  // combine back: one prefix difference per run of far nodes (d = replica nodes before the run).
  void far_part(int e, double sign) {
    const std::vector<int>& reps = reps_[e];
    const size_t m = reps.size();
    far_rows_.assign(m, 0);
    int d = 0, run_start = 0;
    auto add_run = [&](int end) {
      if (end <= run_start) return;
      const double* hi = far_prefix(e, d, end);
      const double* lo = far_prefix(e, d, run_start);
      for (size_t k = 0; k < m; ++k) far_rows_[k] += hi[k] - lo[k];
    };
    for (size_t i = 0; i < m; ++i) {  // reps are node-sorted: once per node holding replicas
      const int n = node_of(reps[i]);
      if (i > 0 && n == node_of(reps[i - 1])) continue;
      add_run(n);
      ++d;
      run_start = n + 1;
    }
    add_run(N_);
    for (size_t i = 0; i < m; ++i) {
      const double x = sign * far_rows_[i];
      if (x == 0) continue;
      const int r = reps[i];
      recv_[r] += x;
      comb_inter_[r] += x;
      nic_[nic_of_[r]] += x;
    }
  }

  // Sources of node n when it holds replicas of e: own rank, else split over the node's replicas
  // via NVLink. Nothing when n holds none (its sources are far).
  void local_part(int e, int n, double sign) {
    const std::vector<int>& reps = reps_[e];
    const auto first = std::lower_bound(reps.begin(), reps.end(), n * gpn_);
    const auto last = std::lower_bound(first, reps.end(), (n + 1) * gpn_);
    const int m = static_cast<int>(last - first);
    if (m == 0) return;
    const int* local = &*first;
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
      const double start = replica_start(p, t, m);
      for (int i = 0; i < m; ++i) {
        const double x = sign * replica_share(t, m, i, start);
        if (x == 0) continue;
        recv_[local[i]] += x;
        disp_intra_[s] += x;
        comb_intra_[local[i]] += x;
      }
    }
  }

  // Only the far split and the two nodes involved change; other replica nodes keep their sources.
  void move_expert(int e, int from, int to) {
    const int nf = node_of(from), nt = node_of(to);
    far_part(e, -1);
    local_part(e, nf, -1);
    if (nt != nf) local_part(e, nt, -1);
    auto& r = reps_[e];
    r.erase(std::find(r.begin(), r.end(), from));
    r.insert(std::lower_bound(r.begin(), r.end(), to), to);
    if (nf != nt) {
      if (--on_node_[size_t(e) * N_ + nf] == 0) far_dispatch(e, nf, +1);
      if (on_node_[size_t(e) * N_ + nt]++ == 0) far_dispatch(e, nt, -1);
    }
    far_part(e, +1);
    local_part(e, nf, +1);
    if (nt != nf) local_part(e, nt, +1);
  }

  // Swaps the experts of two slots (either may be empty); applying it twice restores the state.
  void swap_slots(int sa, int sb) {
    const int ea = slot_[sa], eb = slot_[sb];
    if (ea >= 0) move_expert(ea, rank_of(sa), rank_of(sb));
    if (eb >= 0) move_expert(eb, rank_of(sb), rank_of(sa));
    std::swap(slot_[sa], slot_[sb]);
  }

  // A swap must move two different experts and never put two copies of one expert on a rank.
  bool valid(int sa, int sb) const {
    const int ea = slot_[sa], eb = slot_[sb], ra = rank_of(sa), rb = rank_of(sb);
    if (ea == eb || ra == rb) return false;
    if (ea >= 0 && hosts(rb, ea)) return false;
    if (eb >= 0 && hosts(ra, eb)) return false;
    return true;
  }

  bool try_round(std::vector<Candidate> cands, int per_round, double min_bal, Objective& cur) {
    auto by_score = [](const Candidate& a, const Candidate& b) {
      if (a.score != b.score) return a.score > b.score;
      return a.slot_a != b.slot_a ? a.slot_a < b.slot_a : a.slot_b < b.slot_b;
    };
    std::sort(cands.begin(), cands.end(), by_score);
    cands.erase(std::unique(cands.begin(), cands.end(),
                            [](const Candidate& a, const Candidate& b) { return a.slot_a == b.slot_a && a.slot_b == b.slot_b; }),
                cands.end());
    const size_t k = std::min(cands.size(), static_cast<size_t>(per_round));
    for (size_t i = 0; i < k; ++i) {
      swap_slots(cands[i].slot_a, cands[i].slot_b);
      const Objective next = measure();
      if (improves(next, cur) && next.balancedness >= min_bal - 1e-12) {
        cur = next;
        return true;
      }
      swap_slots(cands[i].slot_a, cands[i].slot_b);
    }
    return false;
  }

  // Rows the GPUs on `rank`'s NIC send to expert e (their dispatch demand).
  double rail_demand(int rank, int e) const {
    double d = 0;
    const int node = node_of(rank);
    for (int s = node * gpn_; s < (node + 1) * gpn_; ++s)
      if (nic_of_[s] == nic_of_[rank]) d += t_[s][e];
    return d;
  }

  // Swaps that should relieve the busiest NIC. Its load is what its GPUs send off-node: dispatch of
  // their tokens to experts absent from the node, and combine rows of the experts they host.
  // Partners: replicas of the experts those GPUs use most that the node lacks, slots on the nodes
  // that use the NIC's hosted experts most, the least loaded NICs' slots, and the node's other rails.
  // Each pair is scored by the predicted load of the two NICs it changes most (the busiest and the
  // partner's); only pairs predicted to lower the maximum are kept.
  std::vector<Candidate> nic_candidates() const {
    int busiest = 0;
    for (size_t i = 1; i < nic_.size(); ++i)
      if (nic_[i] > nic_[busiest]) busiest = static_cast<int>(i);
    const int node = busiest / nics_;
    int rail_rank = -1;
    for (int s = node * gpn_; s < (node + 1) * gpn_ && rail_rank < 0; ++s)
      if (nic_of_[s] == busiest) rail_rank = s;
    std::vector<double> demand(E_, 0);  // of the busiest NIC's GPUs
    for (int e = 0; e < E_; ++e) demand[e] = rail_demand(rail_rank, e);

    constexpr size_t kExperts = 8, kPerExpert = 2, kQuiet = 16;
    auto by_nic = [&](int ra, int rb) { return nic_[nic_of_[ra]] != nic_[nic_of_[rb]] ? nic_[nic_of_[ra]] < nic_[nic_of_[rb]] : ra < rb; };
    std::vector<int> partners;
    auto add_rank = [&](int r) {
      for (int k = 0; k < spg_; ++k) partners.push_back(r * spg_ + k);
    };
    std::vector<int> absent;
    for (int e = 0; e < E_; ++e)
      if (on_node_[size_t(e) * N_ + node] == 0 && demand[e] > 0) absent.push_back(e);
    const size_t ne = std::min(absent.size(), kExperts);
    std::partial_sort(absent.begin(), absent.begin() + ne, absent.end(),
                      [&](int a, int b) { return demand[a] != demand[b] ? demand[a] > demand[b] : a < b; });
    for (size_t i = 0; i < ne; ++i) {
      std::vector<int> hosts = reps_[absent[i]];
      const size_t nh = std::min(hosts.size(), kPerExpert);
      std::partial_sort(hosts.begin(), hosts.begin() + nh, hosts.end(), by_nic);
      for (size_t j = 0; j < nh; ++j) add_rank(hosts[j]);
    }
    std::vector<int> quiet;
    for (int r = 0; r < G_; ++r)
      if (node_of(r) != node) quiet.push_back(r);
    const size_t nq = std::min(quiet.size(), kQuiet);
    std::partial_sort(quiet.begin(), quiet.begin() + nq, quiet.end(), by_nic);
    for (size_t i = 0; i < nq; ++i) add_rank(quiet[i]);
    for (int r = node * gpn_; r < (node + 1) * gpn_; ++r)
      if (nic_of_[r] != busiest) add_rank(r);
    const size_t shared = partners.size();

    std::vector<Candidate> out;
    const double top = nic_[busiest];
    for (int sa = node * gpn_ * spg_; sa < (node + 1) * gpn_ * spg_; ++sa) {
      const int ra = rank_of(sa), ea = slot_[sa];
      const bool a_on_rail = nic_of_[ra] == busiest;
      partners.resize(shared);
      if (a_on_rail && ea >= 0) {  // the nodes lacking ea that use it most
        int best[2] = {-1, -1};
        for (int n = 0; n < N_; ++n) {
          if (n == node || on_node_[size_t(ea) * N_ + n] > 0) continue;
          const double d = node_demand_[size_t(ea) * N_ + n];
          if (d <= 0) continue;
          if (best[0] < 0 || d > node_demand_[size_t(ea) * N_ + best[0]]) best[1] = best[0], best[0] = n;
          else if (best[1] < 0 || d > node_demand_[size_t(ea) * N_ + best[1]]) best[1] = n;
        }
        for (int n : best)
          if (n >= 0)
            for (int r = n * gpn_; r < (n + 1) * gpn_; ++r) add_rank(r);
      }
      const double comb_a = ea >= 0 ? comb_inter_[ra] / hosted(ra) : 0;
      for (int sb : partners) {
        const int rb = rank_of(sb), eb = slot_[sb];
        const int nb = node_of(rb);
        if (nic_of_[rb] == busiest || !valid(sa, sb)) continue;
        const double comb_b = eb >= 0 ? comb_inter_[rb] / hosted(rb) : 0;
        double after_top = top, after_b = nic_[nic_of_[rb]];
        if (nb != node) {
          const bool eb_arrives = eb >= 0 && on_node_[size_t(eb) * N_ + node] == 0;
          const bool ea_leaves = ea >= 0 && on_node_[size_t(ea) * N_ + node] == 1;
          const bool ea_arrives = ea >= 0 && on_node_[size_t(ea) * N_ + nb] == 0;
          const bool eb_leaves = eb >= 0 && on_node_[size_t(eb) * N_ + nb] == 1;
          after_top += (ea_leaves ? demand[ea] : 0) - (eb_arrives ? demand[eb] : 0);
          after_b += (eb_leaves ? rail_demand(rb, eb) : 0) - (ea_arrives ? rail_demand(rb, ea) : 0);
          // An expert arriving where it is used returns fewer rows off-node.
          const double eb_at_a =
              std::max(0.0, comb_b - (eb_arrives ? node_demand_[size_t(eb) * N_ + node] / reps_[eb].size() : 0));
          const double ea_at_b =
              std::max(0.0, comb_a - (ea_arrives ? node_demand_[size_t(ea) * N_ + nb] / reps_[ea].size() : 0));
          if (a_on_rail) after_top += eb_at_a - comb_a;
          after_b += ea_at_b - comb_b;
        } else {  // another rail of the same node: only the combine rows change NIC
          if (a_on_rail) after_top += comb_b - comb_a;
          after_b += comb_a - comb_b;
        }
        const double score = top - std::max(after_top, after_b);
        if (score > 0) out.push_back({score, sa, sb});
      }
    }
    return out;
  }

  // Swaps within the node of the busiest NVLink port, between a slot of that GPU and another GPU's:
  // the port stops sending the rows its GPU's tokens route to the arriving expert and sends the
  // leaving expert's instead; the combine rows change with the hosted expert.
  std::vector<Candidate> port_candidates() const {
    int busiest = 0;
    for (int r = 1; r < G_; ++r)
      if (disp_intra_[r] + comb_intra_[r] > disp_intra_[busiest] + comb_intra_[busiest]) busiest = r;
    const int node = node_of(busiest);
    std::vector<Candidate> out;
    for (int sa = busiest * spg_; sa < (busiest + 1) * spg_; ++sa) {
      const int ea = slot_[sa];
      for (int sb = node * gpn_ * spg_; sb < (node + 1) * gpn_ * spg_; ++sb) {
        if (!valid(sa, sb)) continue;
        const int rb = rank_of(sb), eb = slot_[sb];
        double score = (eb >= 0 ? t_[busiest][eb] : 0) - (ea >= 0 ? t_[busiest][ea] : 0);
        score += (ea >= 0 ? comb_intra_[busiest] / hosted(busiest) : 0) - (eb >= 0 ? comb_intra_[rb] / hosted(rb) : 0);
        if (score > 0) out.push_back({score, sa, sb});
      }
    }
    return out;
  }

  int G_, N_, gpn_, nics_, E_, spg_ = 1;
  const std::vector<std::vector<double>>& t_;     // [G][E] expected rows from source to expert
  std::vector<int> slot_;                         // [G * spg] expert in each slot, -1 empty
  std::vector<std::vector<int>> reps_;            // [E] ranks hosting e, ascending
  std::vector<int> on_node_;                      // [E * N] replicas of e on node n
  std::vector<int> nic_of_;                       // [G] NIC index of each rank
  std::vector<size_t> far_offset_;                // [E + 1] offsets into far_prefix_
  std::vector<std::vector<double>> far_prefix_;   // [E][d] -> [N + 1][m_e] far rows of nodes [0, n) to position i
  std::vector<double> node_demand_;               // [E * N] rows node n's sources send to e
  std::vector<double> recv_;                      // [G] rows processed
  std::vector<double> disp_inter_, comb_inter_;   // [G] rows sent off-node (dispatch, combine)
  std::vector<double> disp_intra_, comb_intra_;   // [G] rows sent over NVLink
  std::vector<double> nic_;                       // [N * nics] rows sent through each NIC
  double total_rows_ = 0;
  std::vector<double> far_rows_;                  // scratch
};

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
    for (int l = 0; l < num_layers; ++l) {
      const auto& tokens = profile_layer(load, l, topo.num_ranks(), num_experts, uniform);
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
