// Roofline of a step from the cost model's counts and the cluster's peak rates: what each resource
// (compute, memory, network) achieves in a given time as % of its peak, which one bounds the step and
// the shortest time the peaks allow. The runner applies it to measured times, the simulator to predicted ones.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "cost/cost_model.hpp"

namespace moe {

// Peak rates of the cluster as the config states them (no achievable-efficiency factors).
struct RooflinePeaks {
  double flop_s = 0;              // cluster.gpu.peak_tflops x ranks
  double hbm_bytes_s = 0;         // cluster.gpu.hbm_gb_s x ranks
  double intra_link_bytes_s = 0;  // one GPU's intra-node port, per direction (intra_node.bandwidth_gb_s)
  double inter_link_bytes_s = 0;  // one NIC, per direction (inter_node.bandwidth_gb_s)
};
RooflinePeaks roofline_peaks(const ClusterConfig& cluster);

// What one step does, all ranks together (the cost model's CostTotals, optionally scaled).
struct RooflineCounts {
  double flops = 0;
  double hbm_bytes = 0;
  double intra_node_bytes = 0;      // sent over every intra-node link
  double inter_node_bytes = 0;      // sent over every NIC
  double max_intra_link_bytes = 0;  // busiest intra-node port, max of sent and received
  double max_inter_link_bytes = 0;  // busiest NIC, max of sent and received
};
// `scale` multiplies every count (e.g. 1 / steps: the mean of several steps' totals).
RooflineCounts roofline_counts(const CostTotals& totals, double scale = 1);

// The binding resource of three times: the largest; ties go to network, then compute. "none" when all are 0.
const char* roofline_bound(double compute, double memory, double network);

// Shortest time of each resource at its peak. Compute and memory: all ranks' counts over all ranks'
// peaks (perfect balance); network: the busiest link's bytes over its bandwidth. Each is a lower bound
// on the step time, and so is their max.
struct RooflineTimes {
  double compute_s = 0;
  double memory_s = 0;
  double network_s = 0;
  double min_time_s() const;
  const char* bound() const { return roofline_bound(compute_s, memory_s, network_s); }
};
RooflineTimes roofline_times(const RooflineCounts& counts, const RooflinePeaks& peaks);

// One step's JSON: the counts, achieved rates over `time_s`, % of each resource's peak (the bound
// resource's % equals 100 x roofline_min_time_s / time_s), the per-resource minimum times and the bound.
nlohmann::ordered_json step_efficiency_json(const RooflineCounts& counts, const RooflinePeaks& peaks, double time_s);

// Counts of the prefill and of the mean decode step (over workload.decode_steps; zero without decode).
struct IterationCounts {
  RooflineCounts prefill;
  RooflineCounts decode_step;
  double flops_per_iteration = 0;  // prefill + every decode step, all ranks
};
IterationCounts iteration_counts(const CostModel& model, const Config& config);

// The results entry's "efficiency" block for a prefill time and a mean decode-step time (measured or
// simulated): peaks, the cost model's FLOPs per iteration, and step_efficiency_json of both steps.
nlohmann::ordered_json efficiency_block(const IterationCounts& counts, const ClusterConfig& cluster, double prefill_s,
                                        double decode_step_s);

}  // namespace moe
