// What a layer's placement costs under an expected routing: tokens per GPU, balancedness, bytes per
// link class and on the busiest NIC / NVLink port. Replica choice follows the runtime dispatch
// (choose_replica's cyclic deal), so predictions and counted traffic use the same rule.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "placement/placement.hpp"
#include "topology/topology.hpp"

namespace moe {

struct ReplicaShare {
  int rank = 0;
  double rows = 0;
};

// Cyclic deal: a source whose assignments start at candidate position `start` (in [0, m)) gives
// position i of m candidates floor(count/m) of `count` assignments, plus one if (i - start) mod m <
// count mod m. Fractional counts and starts use the continuous version (the length of [start,
// start + count) that covers [i, i+1) modulo m); integer inputs give the integer deal exactly.
inline double replica_share(double count, int m, int i, double start) {
  const double full = std::floor(count / m), rest = count - full * m;
  auto overlap = [](double a, double b, double x) { return std::max(0.0, std::min(b, x + 1) - std::max(a, x)); };
  return full + overlap(start, start + rest, i) + overlap(start, start + rest, i + m);
}

// floor(x) for the non-negative quotients of the deal: a truncating conversion (std::floor is a
// library call on baseline x86-64, and this runs per source and expert).
inline double floor_nonneg(double x) {
  return x >= 0 && x < 4.0e18 ? static_cast<double>(static_cast<int64_t>(x)) : std::floor(x);
}

// choose_replica's start position for a source with rotation index p sending `count` assignments:
// (p * count) mod m, exact for integer products below 2^40 (floor of the quotient, not fmod: this runs
// per source and expert in the placement search).
inline double replica_start(double source_index, double count, int m) {
  const double x = source_index * count;
  double r = x - floor_nonneg(x / m) * m;
  if (r < 0) r += m;
  if (r >= m) r -= m;
  return r;
}

// Accumulates the cyclic deal of `count` assignments from candidate position `start` (in [0, m)) in
// O(1) plus the cells its arc ends in: position i then holds whole + part[i] + (diff[0] + ... +
// diff[i]), which equals the sum of replica_share(count, m, i, start) over the deals added. `whole`
// gets floor(count/m), `part` (size m) the partly covered cells, `diff` (size m + 1, a difference
// array) the runs of fully covered cells. Consecutive sources with equal counts c continue one arc
// (source j starts at start_0 + j * c mod m), so a run of R of them adds R * floor(c/m) to whole and
// one deal of R * (c mod m) from start_0: exact for integer inputs.
inline void add_deal(double count, int m, double start, double& whole, double* part, double* diff) {
  const double full = floor_nonneg(count / m), rest = count - full * m;
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

// add_deal for `sources` consecutive sources with rotation indices p0, p0 + 1, ... sending `count`
// each (their arcs join into one).
inline void add_deal_run(double count, double sources, int m, double p0, double& whole, double* part, double* diff) {
  const double full = floor_nonneg(count / m);
  whole += sources * full;
  add_deal(sources * (count - full * m), m, replica_start(p0, count, m), whole, part, diff);
}

// How `count` assignments from `src_rank` to `expert` split over the expert's replicas, as
// choose_replica distributes them over one routing: only the nearest candidates are used
// (replica_candidates: own rank, else same node, else all replicas), dealt cyclically from
// replica_start(p, count, m) (replica_share).
// Exact for the runtime, chunked or not, when every rank hosting a replicated expert hosts only that
// expert (what every placer here produces: replicas exist only when G > E, one slot per rank);
// otherwise the runtime's shared per-rank counters make the split depend on token order and this is
// its model. Appends to `out` (cleared first).
void split_over_replicas(const LayerPlacement& lp, int expert, int src_rank, const Topology& topo, double count,
                         std::vector<ReplicaShare>& out);

// Expected metrics of one layer. Bytes count dispatch (source -> expert) and combine (expert ->
// source), each direction sent by its sender, like the runtime's traffic counters; a GPU sends
// inter-node bytes through NIC (gpu % nics_per_node) of its node and intra-node bytes through its
// NVLink port (the link model of summarize_traffic).
struct PlanMetrics {
  std::vector<double> tokens_per_gpu;  // [G] assignments processed by each rank's experts
  double balancedness = 1;             // mean / max of tokens_per_gpu (1 when there are no tokens)
  double intra_node_bytes = 0;
  double inter_node_bytes = 0;
  std::vector<double> nic_bytes;       // [nodes * nics_per_node] sent through each NIC
  std::vector<double> port_bytes;      // [G] sent through each GPU's NVLink port
  double max_inter_link_bytes = 0;     // busiest NIC
  int busiest_nic = -1;                // node * nics_per_node + nic (lowest on ties), -1 if no inter bytes
  double max_intra_link_bytes = 0;     // busiest NVLink port
  int busiest_port = -1;               // rank (lowest on ties), -1 if no intra bytes
};

// tokens: [G][E] expected assignments from each source rank to each expert (one LoadProfile layer).
PlanMetrics compute_plan_metrics(const LayerPlacement& lp, const Topology& topo, int nics_per_node,
                                 double bytes_per_row, const std::vector<std::vector<double>>& tokens);

// Expected dispatch rows [src][dst] under the same replica rule (combine is the transpose).
std::vector<std::vector<double>> expected_dispatch_rows(const LayerPlacement& lp, const Topology& topo,
                                                        const std::vector<std::vector<double>>& tokens);

// mean / max of loads (1 when all are zero or there are none).
double balancedness_of(const std::vector<double>& loads);

}  // namespace moe
