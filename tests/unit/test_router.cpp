// Routing rules: softmax numerics, top-k order and ties, multipliers, renormalization, capacity
// drops and ceil values, and the `paper` load balancer against hand-computed multipliers.
#include <catch2/catch.hpp>

#include <cmath>

#include "routing/router.hpp"

using namespace moe;

namespace {
LoadBalancingConfig paper_cfg(int interval, double threshold = 1.2, double step = 0.1) {
  LoadBalancingConfig c;
  c.policy = "paper";
  c.threshold = threshold;
  c.step = step;
  c.update_interval_tokens = interval;
  return c;
}
}  // namespace

TEST_CASE("softmax is stable for large logits and sums to one", "[router]") {
  std::vector<float> logits = {1000.f, 1000.f, -1000.f, 0.f,  //
                               -1e4f, -1e4f + 1.f, -1e4f, -1e4f,  //
                               3e38f, 0.f, 0.f, 0.f};
  softmax_rows(logits, 3, 4);
  for (float v : logits) REQUIRE(std::isfinite(v));
  CHECK(logits[0] == Approx(0.5));
  CHECK(logits[1] == Approx(0.5));
  CHECK(logits[2] == 0.0f);
  const double e = std::exp(1.0);
  CHECK(logits[5] == Approx(e / (e + 3)).epsilon(1e-6));
  CHECK(logits[4] == Approx(1 / (e + 3)).epsilon(1e-6));
  CHECK(logits[8] == 1.0f);
  for (int t = 0; t < 3; ++t) {
    double sum = 0;
    for (int j = 0; j < 4; ++j) sum += logits[t * 4 + j];
    CHECK(sum == Approx(1.0).epsilon(1e-6));
  }
}

TEST_CASE("top-k: descending score, ties to the lower expert index", "[router]") {
  const std::vector<double> ones(4, 1.0);
  const std::vector<float> probs = {0.25f, 0.25f, 0.25f, 0.25f,  //
                                    0.1f, 0.4f, 0.1f, 0.4f,      //
                                    0.1f, 0.2f, 0.3f, 0.4f};
  const Routing r = route_top_k(probs, 3, 4, 2, ones, true);
  CHECK(r.expert == std::vector<int32_t>{0, 1, 1, 3, 3, 2});
  CHECK(r.weight[0] == 0.5f);
  CHECK(r.weight[1] == 0.5f);
  CHECK(r.weight[4] == Approx(0.4 / 0.7));
  CHECK(r.weight[5] == Approx(0.3 / 0.7));
  CHECK(r.chosen_per_expert == std::vector<int64_t>{1, 2, 1, 2});
  CHECK(r.dropped_per_expert == std::vector<int64_t>{0, 0, 0, 0});
}

TEST_CASE("multipliers change the choice and weights stay the unmultiplied p", "[router]") {
  const std::vector<float> probs = {0.5f, 0.3f, 0.2f};
  const std::vector<double> m = {0.5, 1.0, 1.0};  // scores 0.25, 0.3, 0.2
  SECTION("k = 1") {
    const Routing plain = route_top_k(probs, 1, 3, 1, {1, 1, 1}, false);
    CHECK(plain.expert[0] == 0);
    const Routing renorm = route_top_k(probs, 1, 3, 1, m, true);
    CHECK(renorm.expert[0] == 1);
    CHECK(renorm.weight[0] == 1.0f);
    const Routing raw = route_top_k(probs, 1, 3, 1, m, false);
    CHECK(raw.expert[0] == 1);
    CHECK(raw.weight[0] == 0.3f);  // p_1, not p_1 * m_1
    CHECK(raw.chosen_per_expert == std::vector<int64_t>{0, 1, 0});
  }
  SECTION("k = 2") {
    const Routing r = route_top_k(probs, 1, 3, 2, m, true);
    CHECK(r.expert == std::vector<int32_t>{1, 0});
    CHECK(r.weight[0] == Approx(0.3 / 0.8));
    CHECK(r.weight[1] == Approx(0.5 / 0.8));
    const Routing raw = route_top_k(probs, 1, 3, 2, m, false);
    CHECK(raw.weight[0] == 0.3f);
    CHECK(raw.weight[1] == 0.5f);
  }
}

TEST_CASE("expert capacity is the exact ceil", "[router]") {
  CHECK(expert_capacity(0.0, 100, 2, 4) == -1);
  CHECK(expert_capacity(1.0, 10, 2, 4) == 5);
  CHECK(expert_capacity(1.0, 10, 1, 4) == 3);    // ceil(2.5)
  CHECK(expert_capacity(1.25, 7, 2, 3) == 6);    // ceil(5.833)
  CHECK(expert_capacity(0.5, 3, 1, 4) == 1);     // ceil(0.375)
  CHECK(expert_capacity(1.0, 0, 2, 4) == 0);
  // Factors not representable in binary: the decimal product is an integer, so no extra slot.
  CHECK(expert_capacity(1.1, 100, 2, 4) == 55);
  CHECK(expert_capacity(1.2, 100, 2, 16) == 15);
  CHECK(expert_capacity(0.3, 10, 1, 1) == 3);
  CHECK(expert_capacity(1.1, 1000, 1, 1) == 1100);
  CHECK(expert_capacity(1.5, 1000000, 2, 16) == 187500);
  CHECK(expert_capacity(1.01, 3, 1, 1) == 4);  // 3.03 -> 4
  CHECK_THROWS(expert_capacity(-1.0, 10, 2, 4));
}

TEST_CASE("capacity drops later assignments in token order", "[router]") {
  Routing r;
  r.num_tokens = 4;
  r.top_k = 2;
  r.expert = {0, 1, 0, 2, 1, 0, 0, 1};
  r.weight = {0.6f, 0.4f, 0.7f, 0.3f, 0.55f, 0.45f, 0.8f, 0.2f};
  r.chosen_per_expert = {4, 3, 1};
  SECTION("no earlier assignments") {
    Routing a = r;
    apply_capacity(a, 3, 2, {0, 0, 0});
    CHECK(a.expert == std::vector<int32_t>{0, 1, 0, 2, 1, -1, -1, -1});
    CHECK(a.weight == std::vector<float>{0.6f, 0.4f, 0.7f, 0.3f, 0.55f, 0.f, 0.f, 0.f});
    CHECK(a.dropped_per_expert == std::vector<int64_t>{2, 1, 0});
    CHECK(a.chosen_per_expert == r.chosen_per_expert);
  }
  SECTION("earlier tokens of the same group count against the capacity") {
    Routing a = r;
    apply_capacity(a, 3, 2, {1, 0, 2});
    CHECK(a.expert == std::vector<int32_t>{0, 1, -1, -1, 1, -1, -1, -1});
    CHECK(a.weight == std::vector<float>{0.6f, 0.4f, 0.f, 0.f, 0.55f, 0.f, 0.f, 0.f});
    CHECK(a.dropped_per_expert == std::vector<int64_t>{3, 1, 1});
  }
  SECTION("unlimited capacity is a no-op") {
    Routing a = r;
    apply_capacity(a, 3, -1, {});
    CHECK(a.expert == r.expert);
    CHECK(a.weight == r.weight);
    CHECK(a.dropped_per_expert == std::vector<int64_t>{0, 0, 0});
  }
  SECTION("splitting a group into blocks gives the same drops") {
    Routing first = r, second = r;
    first.num_tokens = 2;
    first.expert.resize(4);
    first.weight.resize(4);
    second.num_tokens = 2;
    second.expert.erase(second.expert.begin(), second.expert.begin() + 4);
    second.weight.erase(second.weight.begin(), second.weight.begin() + 4);
    apply_capacity(first, 3, 2, {0, 0, 0});
    apply_capacity(second, 3, 2, {2, 1, 1});  // chosen counts of tokens 0..1
    CHECK(first.expert == std::vector<int32_t>{0, 1, 0, 2});
    CHECK(second.expert == std::vector<int32_t>{1, -1, -1, -1});
  }
}

TEST_CASE("load balancer: hand-computed paper updates", "[router][balancer]") {
  LoadBalancer lb(paper_cfg(10), 4);
  CHECK(lb.multipliers() == std::vector<double>{1, 1, 1, 1});
  // counts {10,5,3,2}: mean 5; 10 > 6 -> down; 5 stays; 3, 2 < 5/1.2 -> up.
  lb.observe(10, {10, 5, 3, 2});
  CHECK(lb.end_step());
  CHECK(lb.multipliers()[0] == Approx(0.9));
  CHECK(lb.multipliers()[1] == 1.0);
  CHECK(lb.multipliers()[2] == Approx(1.1));
  CHECK(lb.multipliers()[3] == Approx(1.1));
  lb.observe(10, {10, 5, 3, 2});
  CHECK(lb.end_step());
  CHECK(lb.multipliers()[0] == Approx(0.81));
  CHECK(lb.multipliers()[2] == Approx(1.21));
  CHECK(lb.num_updates() == 2);
  // Empty window after an update: the next step is below the interval.
  CHECK_FALSE(lb.end_step());
  CHECK(lb.num_updates() == 2);
}

TEST_CASE("load balancer: counts exactly at the thresholds do not move", "[router][balancer]") {
  // threshold 2, mean 4: 8 == 2 * 4 and 2 == 4 / 2 are not strictly beyond the bounds.
  LoadBalancer lb(paper_cfg(1, 2.0, 0.1), 4);
  lb.observe(16, {2, 4, 8, 2});
  CHECK(lb.end_step());
  CHECK(lb.multipliers() == std::vector<double>{1, 1, 1, 1});
  lb.observe(16, {1, 4, 9, 2});
  CHECK(lb.end_step());
  CHECK(lb.multipliers()[0] == Approx(1.1));
  CHECK(lb.multipliers()[1] == 1.0);
  CHECK(lb.multipliers()[2] == Approx(0.9));
  CHECK(lb.multipliers()[3] == 1.0);
}

TEST_CASE("load balancer: clamps at 0.1 and 10", "[router][balancer]") {
  LoadBalancer lb(paper_cfg(1, 1.2, 0.5), 4);
  for (int i = 0; i < 20; ++i) {
    lb.observe(10, {10, 5, 3, 2});
    REQUIRE(lb.end_step());
  }
  CHECK(lb.multipliers()[0] == 0.1);
  CHECK(lb.multipliers()[1] == 1.0);
  CHECK(lb.multipliers()[2] == 10.0);
  CHECK(lb.multipliers()[3] == 10.0);
  // A few steps: 1 -> 0.5 -> 0.25 -> 0.125 -> 0.1 and 1 -> 1.5 -> ... -> 7.59375 -> 10.
  LoadBalancer few(paper_cfg(1, 1.2, 0.5), 4);
  for (int i = 0; i < 3; ++i) {
    few.observe(10, {10, 5, 3, 2});
    few.end_step();
  }
  CHECK(few.multipliers()[0] == Approx(0.125));
  CHECK(few.multipliers()[2] == Approx(3.375));
}

TEST_CASE("load balancer: no update below the interval and the window accumulates", "[router][balancer]") {
  LoadBalancer lb(paper_cfg(10), 4);
  lb.observe(6, {4, 2, 0, 0});
  CHECK_FALSE(lb.end_step());
  CHECK(lb.multipliers() == std::vector<double>{1, 1, 1, 1});
  CHECK(lb.num_updates() == 0);
  // Window {8,2,2,0} over 12 tokens, mean 3: e0 down; e1, e2, e3 < 2.5 -> up. (This step alone,
  // {4,0,2,0} with mean 1.5, would have pushed e2 down.)
  lb.observe(6, {4, 0, 2, 0});
  CHECK(lb.end_step());
  CHECK(lb.multipliers()[0] == Approx(0.9));
  CHECK(lb.multipliers()[1] == Approx(1.1));
  CHECK(lb.multipliers()[2] == Approx(1.1));
  CHECK(lb.multipliers()[3] == Approx(1.1));
  // Several layer-steps observed within one step all count.
  LoadBalancer multi(paper_cfg(10), 4);
  multi.observe(5, {3, 2, 0, 0});
  multi.observe(5, {5, 0, 2, 3});
  CHECK(multi.end_step());
  CHECK(multi.multipliers()[0] == Approx(0.9));  // {8,2,2,3}, mean 3.75
}

TEST_CASE("load balancer: policy none and reset", "[router][balancer]") {
  LoadBalancingConfig none;
  none.policy = "none";
  none.update_interval_tokens = 1;
  LoadBalancer off(none, 3);
  off.observe(100, {100, 0, 0});
  CHECK_FALSE(off.end_step());
  CHECK(off.multipliers() == std::vector<double>{1, 1, 1});
  CHECK(off.num_updates() == 0);

  LoadBalancer lb(paper_cfg(10), 4);
  lb.observe(10, {10, 5, 3, 2});
  lb.end_step();
  lb.observe(6, {6, 0, 0, 0});  // partial window, discarded by reset
  lb.reset();
  CHECK(lb.multipliers() == std::vector<double>{1, 1, 1, 1});
  CHECK(lb.num_updates() == 0);
  lb.observe(6, {0, 0, 0, 6});
  CHECK_FALSE(lb.end_step());  // only 6 tokens since reset

  LoadBalancingConfig bad;
  bad.policy = "eplb";
  CHECK_THROWS(LoadBalancer(bad, 4));
}
