// Counted and predicted traffic (see traffic_report.hpp).
#include "report/traffic_report.hpp"

#include <algorithm>

#include "placement/plan_metrics.hpp"

namespace moe {
namespace {

using ojson = nlohmann::ordered_json;

// Sum of the plan metrics of every layer for `tokens` ([L][G][E]; empty rows = uniform profile).
ojson predicted_json(const Placement& p, const Topology& topo, int nics, double bytes_per_row,
                     const std::vector<std::vector<std::vector<double>>>& tokens) {
  const int G = topo.num_ranks();
  std::vector<double> port(G, 0), nic(static_cast<size_t>(topo.nodes()) * std::max(1, nics), 0);
  double intra = 0, inter = 0;
  for (size_t l = 0; l < p.layers.size(); ++l) {
    const PlanMetrics m = compute_plan_metrics(p.layers[l], topo, nics, bytes_per_row, tokens.at(l));
    intra += m.intra_node_bytes;
    inter += m.inter_node_bytes;
    for (int g = 0; g < G; ++g) port[g] += m.port_bytes[g];
    for (size_t i = 0; i < nic.size(); ++i) nic[i] += m.nic_bytes[i];
  }
  return {{"intra_node_bytes", intra}, {"inter_node_bytes", inter},
          {"max_intra_node_link_bytes", *std::max_element(port.begin(), port.end())},
          {"max_inter_node_link_bytes", nic.empty() ? 0.0 : *std::max_element(nic.begin(), nic.end())},
          {"port_bytes", port}, {"nic_bytes", nic}};
}

}  // namespace

ojson traffic_json(const Config& c, const Topology& topo, std::vector<std::vector<int64_t>> m, int iterations,
                   const TrafficPrediction& prediction, const CheckedRouting& checked) {
  for (auto& row : m)
    for (auto& b : row) b /= std::max(1, iterations);
  const int nics = c.cluster.inter_node.nics_per_node;
  const TrafficSummary s = summarize_traffic(topo, nics, m);
  ojson j = {{"per_iteration", true},
             {"intra_node_bytes", s.intra_node_bytes},
             {"inter_node_bytes", s.inter_node_bytes},
             {"max_intra_node_link_bytes", s.max_intra_link_bytes},
             {"max_inter_node_link_bytes", s.max_inter_link_bytes},
             {"port_bytes", s.port_bytes},
             {"nic_bytes", s.nic_bytes},
             {"links", "port_bytes[rank]: sent over the GPU's NVLink port; nic_bytes[node * nics_per_node + gpu % "
                       "nics_per_node]: sent over that NIC"}};
  if (!prediction.placement) return j;
  const Placement& p = *prediction.placement;
  const int G = topo.num_ranks(), E = c.model.experts;
  std::vector<std::vector<std::vector<double>>> planned(p.layers.size()), counted(p.layers.size());
  std::vector<std::vector<double>> uniform;
  for (size_t l = 0; l < p.layers.size(); ++l) {
    if (prediction.planned.tokens.empty()) {
      // Uniform: every source sends its iteration's assignments evenly over the experts.
      const double per = double(c.workload.batch_sequences) / G * (c.workload.prompt_tokens + c.workload.decode_steps) *
                         c.model.top_k / E;
      planned[l].assign(G, std::vector<double>(E, per));
    } else {
      planned[l] = prediction.planned.tokens.at(l);
    }
    if (!checked.chosen_by_source.empty()) {
      counted[l].assign(G, std::vector<double>(E, 0));
      for (int g = 0; g < G; ++g)
        for (int e = 0; e < E; ++e)
          counted[l][g][e] = double(checked.chosen_by_source[l][g][e] - checked.dropped_by_source[l][g][e]);
    }
  }
  const double row = double(prediction.bytes_per_row);
  j["predicted_from_plan"] = predicted_json(p, topo, nics, row, planned);
  j["predicted_from_plan"]["routing"] = prediction.planned_spec.empty() ? "uniform" : prediction.planned_spec;
  if (!checked.chosen_by_source.empty()) {
    j["predicted_from_counted_routing"] = predicted_json(p, topo, nics, row, counted);
    j["predicted_from_counted_routing"]["routing"] =
        "the run's kept assignments per source rank and expert, summed over the iteration's steps";
  }
  j["prediction_note"] = "dispatch + combine rows of hidden x activation bytes; counted bytes also include any other "
                         "traffic of the strategy";
  return j;
}

}  // namespace moe
