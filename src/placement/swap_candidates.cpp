// The descent of the topology-aware search (see layer_search.hpp): each round proposes swaps that
// should relieve the busiest NIC (else the busiest NVLink port), scored by the predicted load of
// the links they change, and takes the first that improves the objective.
#include <algorithm>
#include <limits>

#include "placement/layer_search.hpp"

namespace moe {
namespace {

// The k smallest of [first, last) under the total order `less`, ascending, into out (what
// partial_sort would put first, in one pass).
template <class It, class Less>
void smallest(It first, It last, size_t k, Less less, std::vector<int>& out) {
  out.clear();
  for (It it = first; it != last; ++it) {
    if (out.size() == k && !less(*it, out.back())) continue;
    out.insert(std::upper_bound(out.begin(), out.end(), *it, less), *it);
    if (out.size() > k) out.pop_back();
  }
}

}  // namespace

// Greedy descent: each round gathers swaps that should relieve the busiest NIC (else the busiest
// NVLink port), evaluates the best estimates exactly and takes the first that improves the
// objective without balancedness falling below `min_balancedness`.
void LayerSearch::run(int max_moves, int per_round, double min_balancedness) {
  Objective cur = measure();
  for (int move = 0; move < max_moves; ++move) {
    bool moved = false;
    if (cur.max_nic > 0) moved = try_round(nic_candidates(), per_round, min_balancedness, cur);
    if (!moved) moved = try_round(port_candidates(), per_round, min_balancedness, cur);
    if (!moved) break;
  }
}

bool LayerSearch::try_round(std::vector<Candidate> cands, int per_round, double min_bal, Objective& cur) {
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

// The k ranks off `node` with the least loaded NICs (ties: lower rank), ascending: smallest() over
// them with by_nic, skipping ranks whose NIC load is not below the k-th.
void LayerSearch::quietest(int node, size_t k, std::vector<int>& out) const {
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

void LayerSearch::add_rank_slots(int rank, std::vector<int>& slots) const {
  for (int k = 0; k < spg_; ++k) slots.push_back(rank * spg_ + k);
}

std::vector<int> LayerSearch::nic_partners(int busiest, const double* demand) const {
  const int node = busiest / nics_;
  constexpr size_t kExperts = 8, kPerExpert = 2, kQuiet = 16;
  auto by_nic = [&](int ra, int rb) { return nic_[nic_of_[ra]] != nic_[nic_of_[rb]] ? nic_[nic_of_[ra]] < nic_[nic_of_[rb]] : ra < rb; };
  std::vector<int> partners;
  std::vector<int> absent;
  for (int e = 0; e < E_; ++e)
    if (on_node_[size_t(e) * N_ + node] == 0 && demand[e] > 0) absent.push_back(e);
  const size_t ne = std::min(absent.size(), kExperts);
  std::partial_sort(absent.begin(), absent.begin() + ne, absent.end(),
                    [&](int a, int b) { return demand[a] != demand[b] ? demand[a] > demand[b] : a < b; });
  std::vector<int> best;
  for (size_t i = 0; i < ne; ++i) {
    smallest(reps_[absent[i]].begin(), reps_[absent[i]].end(), kPerExpert, by_nic, best);
    for (int r : best) add_rank_slots(r, partners);
  }
  quietest(node, kQuiet, best);
  for (int r : best) add_rank_slots(r, partners);
  for (int r = node * gpn_; r < (node + 1) * gpn_; ++r)
    if (nic_of_[r] != busiest) add_rank_slots(r, partners);
  return partners;
}

void LayerSearch::add_demand_nodes(int ea, int node, std::vector<int>& partners) const {
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
      for (int r = n * gpn_; r < (n + 1) * gpn_; ++r) add_rank_slots(r, partners);
}

double LayerSearch::nic_swap_score(int busiest, const double* demand, int sa, int sb) const {
  const int node = busiest / nics_;
  const int ra = rank_of(sa), ea = slot_[sa];
  const bool a_on_rail = nic_of_[ra] == busiest;
  const double comb_a = ea >= 0 ? comb_inter_[ra] / hosted(ra) : 0;
  const int rb = rank_of(sb), eb = slot_[sb];
  const int nb = node_of(rb);
  const double comb_b = eb >= 0 ? comb_inter_[rb] / hosted(rb) : 0;
  const double top = nic_[busiest];
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
  return top - std::max(after_top, after_b);
}

std::vector<Candidate> LayerSearch::nic_candidates() {
  int busiest = 0;
  for (size_t i = 1; i < nic_.size(); ++i)
    if (nic_[i] > nic_[busiest]) busiest = static_cast<int>(i);
  const int node = busiest / nics_;
  const double* demand = &rail_[size_t(busiest) * E_];  // [E] of the busiest NIC's GPUs
  std::vector<int> partners = nic_partners(busiest, demand);
  const size_t shared = partners.size();

  std::vector<Candidate> out;
  seen_.resize(size_t(G_) * spg_, 0);
  for (int sa = node * gpn_ * spg_; sa < (node + 1) * gpn_ * spg_; ++sa) {
    const int ra = rank_of(sa), ea = slot_[sa];
    partners.resize(shared);
    ++stamp_;  // each partner slot once per sa
    if (nic_of_[ra] == busiest && ea >= 0) add_demand_nodes(ea, node, partners);
    for (int sb : partners) {
      if (seen_[sb] == stamp_) continue;
      seen_[sb] = stamp_;
      if (nic_of_[rank_of(sb)] == busiest || !valid(sa, sb)) continue;
      const double score = nic_swap_score(busiest, demand, sa, sb);
      if (score > 0) out.push_back({score, sa, sb});
    }
  }
  return out;
}

// Swaps within the node of the busiest NVLink port, between a slot of that GPU and another GPU's:
// the port stops sending the rows its GPU's tokens route to the arriving expert and sends the
// leaving expert's instead; the combine rows change with the hosted expert.
std::vector<Candidate> LayerSearch::port_candidates() const {
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

}  // namespace moe
