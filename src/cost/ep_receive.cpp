// The receive-row bound of an ep rank (see ep_receive.hpp).
#include "cost/ep_receive.hpp"

#include <algorithm>
#include <cmath>
#include <functional>

#include "core/error.hpp"
#include "core/routing_distribution.hpp"
#include "routing/router.hpp"
#include "schedule/schedule.hpp"

namespace moe {

double top_inclusion_sum(const std::vector<double>& shares, int k, int hosted, int points) {
  MOE_REQUIRE(k >= 1 && hosted >= 1 && points >= 1, "top_inclusion_sum: k, hosted and points must be positive");
  const double most = std::min(hosted, k);
  std::vector<double> w;
  for (double s : shares)
    if (s > 0) w.push_back(s);
  // With at most k experts of positive share, every one of them is chosen: nothing to integrate.
  if (static_cast<int>(w.size()) <= k) return most;
  std::sort(w.begin(), w.end(), std::greater<double>());
  // Exponential race: expert j arrives at T_j ~ Exp(w_j); the first k arrivals are the choice.
  // pi_e = P(fewer than k others before T_e) = integral over u = exp(-w_e t) in (0, 1] of
  // P(N_{-e}(t) < k), with P(j before t) = 1 - u^(w_j / w_e). The integrand increases with u, so
  // the right Riemann sum bounds the integral from above.
  double sum = 0;
  std::vector<double> dp(static_cast<size_t>(k));
  for (int e = 0; e < std::min<int>(hosted, static_cast<int>(w.size())); ++e) {
    double pi = 0;
    for (int i = 1; i <= points; ++i) {
      const double u = double(i) / points;
      std::fill(dp.begin(), dp.end(), 0.0);
      dp[0] = 1;
      for (size_t j = 0; j < w.size(); ++j) {
        if (static_cast<int>(j) == e) continue;
        const double q = 1 - std::pow(u, w[j] / w[e]);
        for (int c = k - 1; c > 0; --c) dp[c] = dp[c] * (1 - q) + dp[c - 1] * q;
        dp[0] *= 1 - q;
      }
      double below = 0;
      for (double p : dp) below += p;
      pi += below / points;
    }
    sum += std::min(1.0, pi);
  }
  return std::min(most, sum);
}

namespace {

// Largest top_inclusion_sum over the layers and (with local:p) the source nodes, at epoch 0.
double worst_top_inclusion(const Config& c, const RoutingDistribution& d, int hosted) {
  const int E = c.model.experts, k = c.model.top_k;
  const int nodes = std::max(1, c.cluster.nodes);
  const int node_classes = d.locality > 0 ? std::min(nodes, E) : 1;
  // zipf's expert order is per layer: only with locality does that change the sorted shares.
  const int layers = d.locality > 0 && d.kind == RoutingDistribution::Kind::zipf ? std::max(1, c.model.layers) : 1;
  // About 1e7 inner steps at most; fewer points only loosen the (still upper) bound. Past that
  // (many layers and nodes under zipf with local:p) the bound is every choice: min(hosted, k).
  const double per_point = double(layers) * node_classes * std::min(hosted, E) * E * k;
  if (per_point * 8 > 1e7) return std::min(hosted, k);
  const int points = static_cast<int>(std::min(256.0, 1e7 / per_point));
  double worst = 0;
  for (int l = 0; l < layers; ++l) {
    const std::vector<double> popularity = popularity_at(d, l, E, c.model.seed, 0);
    for (int node = 0; node < node_classes; ++node)
      worst = std::max(worst, top_inclusion_sum(local_shares(d, popularity, node, nodes), k, hosted, points));
  }
  return worst;
}

}  // namespace

int64_t ep_receive_rows(const Config& c, const StrategyConfig& s) {
  const int64_t ranks = int64_t(s.ep) * s.expert_tp;
  const int64_t E = c.model.experts, k = c.model.top_k;
  const int hosted = static_cast<int>(E >= s.ep ? (E + s.ep - 1) / s.ep : 1);
  const Schedule prefill = ep_step_schedule(c, s, c.workload.prompt_tokens);
  const Schedule decode = ep_step_schedule(c, s, 1);
  const int64_t prefill_rows = max_part_rows(prefill), decode_rows = max_part_rows(decode);
  const int64_t balanced = prefill_rows * k * s.expert_tp;
  if (!is_routing_distribution(c.workload.routing))
    return static_cast<int64_t>(std::ceil(double(balanced) * kGateReceiveHeadroom));

  const RoutingDistribution d = parse_routing_distribution(c.workload.routing, "workload.routing");
  const double most = std::min<double>(hosted, k);
  const double expected = double(ranks) * prefill_rows * worst_top_inclusion(c, d, hosted);
  double prefill_need = std::min(expected + kReceiveSamplingSigmas * std::sqrt(most * expected) + most,
                                 double(ranks) * prefill_rows * most);
  double decode_need = double(ranks) * decode_rows * most;
  const double factor = s.load_balancing.capacity_factor;
  if (factor > 0) {
    const int64_t batch = c.workload.batch_sequences;
    prefill_need = std::min(prefill_need, double(hosted) * expert_capacity(factor, batch * c.workload.prompt_tokens, k, E));
    decode_need = std::min(decode_need, double(hosted) * expert_capacity(factor, batch, k, E));
  }
  return std::max(balanced, static_cast<int64_t>(std::ceil(std::max(prefill_need, decode_need))));
}

}  // namespace moe
