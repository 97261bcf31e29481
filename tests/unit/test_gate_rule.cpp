// The per-token gate rule (gate_rule.hpp) against a direct statement of the contract: softmax in
// double, a full sort by (score desc, index asc), weights renormalized or not; exact ties go to the
// lower index; multipliers steer the choice but not the weights.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "backend/cpu/cpu_compute.hpp"
#include "core/gate_rule.hpp"
#include "routing/router.hpp"

using namespace moe;

TEST_CASE("gate_token matches a sort of the softmax scores", "[gate_rule]") {
  const int E = 7, k = 3;
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<float> logits(E);
    std::vector<double> mult(E);
    for (int e = 0; e < E; ++e) {
      logits[e] = float(std::sin(1.3 * trial + 0.7 * e) * 3);
      mult[e] = 0.5 + 0.1 * ((trial + e) % 10);
    }
    std::vector<float> probs(E), weights(k);
    std::vector<int32_t> experts(k);
    const bool renorm = trial % 2 == 0;
    gate_token(logits.data(), mult.data(), E, k, renorm, probs.data(), experts.data(), weights.data());

    double mx = *std::max_element(logits.begin(), logits.end()), sum = 0;
    for (float l : logits) sum += std::exp(double(l) - mx);
    std::vector<int> order(E);
    std::iota(order.begin(), order.end(), 0);
    std::vector<double> score(E);
    for (int e = 0; e < E; ++e) {
      CHECK(probs[e] == float(std::exp(double(logits[e]) - mx) / sum));
      score[e] = double(probs[e]) * mult[e];
    }
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return score[a] > score[b]; });
    double chosen = 0;
    for (int j = 0; j < k; ++j) chosen += probs[order[j]];
    for (int j = 0; j < k; ++j) {
      CHECK(experts[j] == order[j]);
      CHECK(weights[j] == float(double(probs[order[j]]) / (renorm ? chosen : 1.0)));
    }
  }
}

TEST_CASE("gate_top_k: exact ties go to the lower index; multipliers steer", "[gate_rule]") {
  const std::vector<float> scores = {0.25f, 0.25f, 0.25f, 0.25f};
  std::vector<double> mult(4, 1.0);
  int32_t experts[2];
  gate_top_k(scores.data(), mult.data(), 4, 2, experts);
  CHECK(experts[0] == 0);
  CHECK(experts[1] == 1);
  mult[3] = 1.5;
  mult[2] = 1.2;
  gate_top_k(scores.data(), mult.data(), 4, 2, experts);
  CHECK(experts[0] == 3);
  CHECK(experts[1] == 2);
  float weights[2];
  gate_weights(scores.data(), experts, 2, true, weights);
  CHECK(weights[0] == 0.5f);  // the multipliers do not enter the weights
  CHECK(weights[1] == 0.5f);
}

TEST_CASE("the backend gate (cpu) routes exactly as the host router", "[gate_rule][cpu_backend]") {
  auto c = make_cpu_compute();
  const int T = 50, E = 9, k = 2;
  std::vector<float> logits(T * E);
  for (int i = 0; i < T * E; ++i) logits[i] = float(std::cos(0.37 * i) * 2);
  std::vector<double> mult(E);
  for (int e = 0; e < E; ++e) mult[e] = 0.8 + 0.05 * e;
  DeviceMat l = c->alloc_mat(T, E);
  c->upload(logits.data(), l.view, Stream::compute);
  DeviceIndex experts = c->alloc_index(T * k);
  DeviceWeights weights = c->alloc_weights(T * k);
  c->gate_top_k(l.view, mult, k, true, experts.view, weights.view);
  std::vector<int32_t> got_e(T * k);
  std::vector<float> got_w(T * k);
  c->download_index(experts.view, got_e.data(), Stream::compute);
  c->download_weights(weights.view, got_w.data(), Stream::compute);

  std::vector<float> probs = logits;
  softmax_rows(probs, T, E);
  const Routing r = route_top_k(probs, T, E, k, mult, true);
  CHECK(got_e == r.expert);
  CHECK(got_w == r.weight);
}
