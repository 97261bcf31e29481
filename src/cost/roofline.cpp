// Roofline rates, bounds and the "efficiency" JSON of results entries (see roofline.hpp).
#include "cost/roofline.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace moe {

namespace {

using ojson = nlohmann::ordered_json;

double rate(double amount, double time_s) { return time_s > 0 ? amount / time_s : 0.0; }
double percent(double achieved, double peak) { return peak > 0 ? 100.0 * achieved / peak : 0.0; }
double time_at(double amount, double peak) { return peak > 0 ? amount / peak : 0.0; }

}  // namespace

RooflinePeaks roofline_peaks(const ClusterConfig& c) {
  const double ranks = double(c.nodes) * c.gpus_per_node;
  MOE_REQUIRE(ranks > 0, "roofline: the cluster has no GPUs");
  RooflinePeaks p;
  p.flop_s = c.gpu.peak_tflops * 1e12 * ranks;
  p.hbm_bytes_s = c.gpu.hbm_gb_s * 1e9 * ranks;
  p.intra_link_bytes_s = c.intra_node.bandwidth_gb_s * 1e9;
  p.inter_link_bytes_s = c.inter_node.bandwidth_gb_s * 1e9;
  return p;
}

RooflineCounts roofline_counts(const CostTotals& t, double scale) {
  RooflineCounts c;
  c.flops = t.flops() * scale;
  c.hbm_bytes = t.hbm_bytes() * scale;
  c.intra_node_bytes = t.links.intra_bytes * scale;
  c.inter_node_bytes = t.links.inter_bytes * scale;
  c.max_intra_link_bytes = t.links.max_port() * scale;
  c.max_inter_link_bytes = t.links.max_nic() * scale;
  return c;
}

const char* roofline_bound(double compute, double memory, double network) {
  const double m = std::max({compute, memory, network});
  if (m <= 0) return "none";
  if (m == network) return "network";
  return m == compute ? "compute" : "memory";
}

double RooflineTimes::min_time_s() const { return std::max({compute_s, memory_s, network_s}); }

RooflineTimes roofline_times(const RooflineCounts& c, const RooflinePeaks& p) {
  RooflineTimes t;
  t.compute_s = time_at(c.flops, p.flop_s);
  t.memory_s = time_at(c.hbm_bytes, p.hbm_bytes_s);
  t.network_s = std::max(time_at(c.max_intra_link_bytes, p.intra_link_bytes_s), time_at(c.max_inter_link_bytes, p.inter_link_bytes_s));
  return t;
}

ojson step_efficiency_json(const RooflineCounts& c, const RooflinePeaks& p, double time_s) {
  const RooflineTimes rt = roofline_times(c, p);
  const double intra_rate = rate(c.max_intra_link_bytes, time_s), inter_rate = rate(c.max_inter_link_bytes, time_s);
  // Percentages are the roofline times over the step time, so the bound resource's % is
  // 100 x roofline_min_time_s / time_s (the network's is its busier link class).
  return {{"time_s", time_s},
          {"flops", c.flops},
          {"hbm_bytes", c.hbm_bytes},
          {"intra_node_bytes", c.intra_node_bytes},
          {"inter_node_bytes", c.inter_node_bytes},
          {"max_intra_node_link_bytes", c.max_intra_link_bytes},
          {"max_inter_node_link_bytes", c.max_inter_link_bytes},
          {"achieved", {{"flop_s", rate(c.flops, time_s)},
                        {"hbm_bytes_s", rate(c.hbm_bytes, time_s)},
                        {"max_intra_node_link_bytes_s", intra_rate},
                        {"max_inter_node_link_bytes_s", inter_rate}}},
          {"percent_of_peak", {{"compute", percent(rate(c.flops, time_s), p.flop_s)},
                               {"memory", percent(rate(c.hbm_bytes, time_s), p.hbm_bytes_s)},
                               {"network", std::max(percent(intra_rate, p.intra_link_bytes_s), percent(inter_rate, p.inter_link_bytes_s))},
                               {"intra_node_link", percent(intra_rate, p.intra_link_bytes_s)},
                               {"inter_node_link", percent(inter_rate, p.inter_link_bytes_s)}}},
          {"roofline_min_s", {{"compute", rt.compute_s}, {"memory", rt.memory_s}, {"network", rt.network_s}}},
          {"bound", rt.bound()},
          {"roofline_min_time_s", rt.min_time_s()},
          {"time_over_roofline_min", rt.min_time_s() > 0 ? ojson(time_s / rt.min_time_s()) : ojson(nullptr)}};
}

IterationCounts iteration_counts(const CostModel& model, const Config& config) {
  IterationCounts ic;
  const CostTotals pre = model.totals(model.prefill());
  ic.prefill = roofline_counts(pre);
  const int steps = config.workload.decode_steps;
  ic.flops_per_iteration = pre.flops();
  if (steps > 0) {
    CostTotals dec = model.totals(model.decode(0));
    for (int t = 1; t < steps; ++t) dec.add(model.totals(model.decode(t)));
    ic.decode_step = roofline_counts(dec, 1.0 / steps);
    ic.flops_per_iteration += dec.flops();
  }
  return ic;
}

ojson efficiency_block(const IterationCounts& counts, const ClusterConfig& cluster, double prefill_s, double decode_step_s) {
  const RooflinePeaks p = roofline_peaks(cluster);
  return {{"cost_model_flops_per_iteration", counts.flops_per_iteration},
          {"peaks", {{"flop_s", p.flop_s},
                     {"hbm_bytes_s", p.hbm_bytes_s},
                     {"intra_node_link_bytes_s", p.intra_link_bytes_s},
                     {"inter_node_link_bytes_s", p.inter_link_bytes_s},
                     {"source", "cluster.gpu.peak_tflops and hbm_gb_s x world size; intra_node.bandwidth_gb_s per GPU "
                                "port and inter_node.bandwidth_gb_s per NIC, per direction"}}},
          {"prefill", step_efficiency_json(counts.prefill, p, prefill_s)},
          {"decode_step", step_efficiency_json(counts.decode_step, p, decode_step_s)}};
}

}  // namespace moe
