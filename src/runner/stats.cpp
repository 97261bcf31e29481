// Summary statistics, load balance measures and the verification error measure.
#include "runner/stats.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace moe {

Summary summarize(std::vector<double> v) {
  Summary s;
  s.count = static_cast<int64_t>(v.size());
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / v.size();
  s.min = v.front();
  s.max = v.back();
  auto pct = [&](double p) {
    const double pos = p * (v.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (pos - lo);
  };
  s.p50 = pct(0.50);
  s.p99 = pct(0.99);
  return s;
}

nlohmann::ordered_json summary_json(const Summary& s) {
  return {{"mean", s.mean}, {"p50", s.p50}, {"p99", s.p99}, {"min", s.min}, {"max", s.max}, {"count", s.count}};
}

LoadSummary summarize_load(const std::vector<int64_t>& per_expert) {
  LoadSummary s;
  if (per_expert.empty()) return s;
  double sum = 0, mx = 0;
  for (int64_t c : per_expert) {
    sum += c;
    mx = std::max(mx, static_cast<double>(c));
  }
  const double mean = sum / per_expert.size();
  if (mx > 0) s.balancedness = mean / mx;
  double var = 0;
  for (int64_t c : per_expert) var += (c - mean) * (c - mean);
  var /= per_expert.size();
  s.cv = mean > 0 ? std::sqrt(var) / mean : 0;
  return s;
}

double max_relative_error(const std::vector<float>& a, const std::vector<float>& ref) {
  MOE_REQUIRE(a.size() == ref.size(), "output has " + std::to_string(a.size()) + " values, reference has " +
                                          std::to_string(ref.size()));
  double max_diff = 0, max_ref = 0;
  bool any_nan = false;  // a NaN anywhere is a failure, whatever comes after it
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - ref[i]);
    any_nan |= std::isnan(d);
    max_diff = std::max(max_diff, d);
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(ref[i])));
  }
  if (any_nan) return NAN;
  if (max_ref == 0) return max_diff == 0 ? 0 : INFINITY;
  return max_diff / max_ref;
}

}  // namespace moe
