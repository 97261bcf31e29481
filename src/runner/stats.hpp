// Small summary statistics used by the runner and reports.
#pragma once
#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

namespace moe {

struct Summary {
  double mean = 0, p50 = 0, p99 = 0, min = 0, max = 0;
  int64_t count = 0;
};
// Percentiles by linear interpolation between order statistics.
Summary summarize(std::vector<double> values);
nlohmann::ordered_json summary_json(const Summary& s);

// Load of one layer: tokens per expert.
struct LoadSummary {
  double balancedness = 1;   // mean / max (1 = perfectly even)
  double cv = 0;             // coefficient of variation (population std / mean)
};
LoadSummary summarize_load(const std::vector<int64_t>& per_expert);

// max_i |a_i - b_i| / max_i |b_i| (0 when both are all zero); sizes must match.
double max_relative_error(const std::vector<float>& a, const std::vector<float>& ref);

}  // namespace moe
