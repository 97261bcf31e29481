// The "topology_aware" placer (paper §1.1): start from the balanced plan and swap the experts of two
// GPU slots while the bytes on the busiest inter-node link (NIC) fall, then those on the busiest
// NVLink port, under the expected routing from each source rank to each expert.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

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

struct Candidate {
  double score;   // predicted fall of the targeted link's load (rows)
  int slot_a, slot_b;
};

// One layer's search state, in rows. Replica choice is the runtime's (split_over_replicas in
// plan_metrics.hpp): a source whose node holds replicas of e uses those (its own rank first); a
// "far" source deals over all replicas, its rotation index counting the ranks of the far nodes
// before it. Far sources follow each other in rotation order, so a run of them with equal rows
// deals one arc (add_deal): nodes whose sources all send e the same rows are grouped into segments
// of equal nodes ([E][N] tables), and the far rows of e cost one deal per segment of far nodes plus
// one pass over e's replicas. Moving one replica touches only e's replicas, the two nodes involved
// and, when a node's far status changes, its sources' dispatch.
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
  Objective measure(double reject_above = std::numeric_limits<double>::infinity()) const {
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

  static bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

  // Deals the far sources of nodes [a, b) (all far, d replica nodes before them) over e's m replicas
  // into far_whole_ / far_part_ / far_diff_: one arc per segment of equal nodes (add_deal).
  void far_gap(int e, int a, int b, int d, int m) {
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
  void compute_far(int e) {
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
  void apply_far(int e, double sign) {
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
  void local_part(int e, int n, double sign) {
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
  void move_expert(int e, int from, int to) {
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
    // Pairs are unique (the candidate lists never repeat one), so the best k under this total order
    // are those of a full sort.
    const size_t k = std::min(cands.size(), static_cast<size_t>(per_round));
    std::partial_sort(cands.begin(), cands.begin() + k, cands.end(), by_score);
    for (size_t i = 0; i < k; ++i) {
      swap_slots(cands[i].slot_a, cands[i].slot_b);
      const Objective next = measure(cur.max_nic);
      if (next.max_nic <= cur.max_nic && improves(next, cur) && next.balancedness >= min_bal - 1e-12) {
        cur = next;
        return true;
      }
      swap_slots(cands[i].slot_a, cands[i].slot_b);
    }
    return false;
  }

  // Rows the GPUs on `rank`'s NIC send to expert e (their dispatch demand).
  double rail_demand(int rank, int e) const { return rail_[size_t(nic_of_[rank]) * E_ + e]; }

  // The k smallest of [first, last) under the total order `less`, ascending, into out (what
  // partial_sort would put first, in one pass).
  template <class It, class Less>
  static void smallest(It first, It last, size_t k, Less less, std::vector<int>& out) {
    out.clear();
    for (It it = first; it != last; ++it) {
      if (out.size() == k && !less(*it, out.back())) continue;
      out.insert(std::upper_bound(out.begin(), out.end(), *it, less), *it);
      if (out.size() > k) out.pop_back();
    }
  }

  // The k ranks off `node` with the least loaded NICs (ties: lower rank), ascending: smallest() over
  // them with by_nic, skipping ranks whose NIC load is not below the k-th.
  void quietest(int node, size_t k, std::vector<int>& out) const {
    out.clear();
    double worst = 0;
    for (int r = 0; r < G_; ++r) {
      if (r == node * gpn_) r += gpn_;  // skip the node
      if (r >= G_) break;
      const double x = nic_[nic_of_[r]];
      if (out.size() == k && x >= worst) continue;  // ascending ranks: an equal load comes after
      auto pos = out.begin();
      while (pos != out.end() && nic_[nic_of_[*pos]] <= x) ++pos;
      out.insert(pos, r);
      if (out.size() > k) out.pop_back();
      worst = nic_[nic_of_[out.back()]];
    }
  }

  // Swaps that should relieve the busiest NIC. Its load is what its GPUs send off-node: dispatch of
  // their tokens to experts absent from the node, and combine rows of the experts they host.
  // Partners: replicas of the experts those GPUs use most that the node lacks, slots on the nodes
  // that use the NIC's hosted experts most, the least loaded NICs' slots, and the node's other rails.
  // Each pair is scored by the predicted load of the two NICs it changes most (the busiest and the
  // partner's); only pairs predicted to lower the maximum are kept.
  std::vector<Candidate> nic_candidates() {
    int busiest = 0;
    for (size_t i = 1; i < nic_.size(); ++i)
      if (nic_[i] > nic_[busiest]) busiest = static_cast<int>(i);
    const int node = busiest / nics_;
    const double* demand = &rail_[size_t(busiest) * E_];  // [E] of the busiest NIC's GPUs

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
    std::vector<int> best;
    for (size_t i = 0; i < ne; ++i) {
      smallest(reps_[absent[i]].begin(), reps_[absent[i]].end(), kPerExpert, by_nic, best);
      for (int r : best) add_rank(r);
    }
    quietest(node, kQuiet, best);
    for (int r : best) add_rank(r);
    for (int r = node * gpn_; r < (node + 1) * gpn_; ++r)
      if (nic_of_[r] != busiest) add_rank(r);
    const size_t shared = partners.size();

    std::vector<Candidate> out;
    const double top = nic_[busiest];
    seen_.resize(size_t(G_) * spg_, 0);
    for (int sa = node * gpn_ * spg_; sa < (node + 1) * gpn_ * spg_; ++sa) {
      const int ra = rank_of(sa), ea = slot_[sa];
      const bool a_on_rail = nic_of_[ra] == busiest;
      partners.resize(shared);
      ++stamp_;  // each partner slot once per sa
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
        if (seen_[sb] == stamp_) continue;
        seen_[sb] = stamp_;
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
  std::vector<double> node_demand_;               // [E * N] rows node n's sources send to e
  std::vector<double> rail_;                      // [N * nics][E] rows the GPUs on a NIC send to e
  std::vector<double> node_rows_;                 // [E * N] rows node n's first source sends to e
  std::vector<char> node_even_;                   // [E * N] every source of n sends e those rows
  std::vector<int> segment_end_;                  // [E * N] end of the run of equal even nodes from n
  std::vector<double> node_full_, node_rest_;     // [E * N] floor(node_rows_ / m_e) and the rest (m_e fixed)
  std::vector<double> recv_;                      // [G] rows processed
  std::vector<double> disp_inter_, comb_inter_;   // [G] rows sent off-node (dispatch, combine)
  std::vector<double> disp_intra_, comb_intra_;   // [G] rows sent over NVLink
  std::vector<double> nic_;                       // [N * nics] rows sent through each NIC
  double total_rows_ = 0;
  std::vector<unsigned> seen_;                    // [G * spg] stamp_ of the sa that last listed a partner slot
  unsigned stamp_ = 0;
  std::vector<std::vector<double>> far_rows_;     // [E][m_e] far rows dealt to e's replica at position i
  std::vector<std::vector<int>> undo_reps_;       // [E] replica list before e's last far recomputation
  std::vector<std::vector<double>> undo_rows_;    // [E] far_rows_ for undo_reps_
  double far_whole_ = 0;                          // scratch deals (add_deal): far and node-local
  std::vector<double> far_part_, far_diff_, loc_part_, loc_diff_;
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
