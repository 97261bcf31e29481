// Routing sources: the gate passes through; synthetic workloads are deterministic, independent of
// how a step's tokens are split into blocks (ranks, micro-batches), follow their distribution
// (zipf shares, hot sets, locality, drift) and are steered by the balancing multipliers; traces
// round-trip through JSON, replay exactly and reject malformed input with the JSON path.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <numeric>

#include "core/error.hpp"
#include "placement/load_profile.hpp"
#include "routing/routing_source.hpp"
#include "expect_config_error.hpp"

using namespace moe;

using moe::testing::expect_config_error;

namespace {

Config make_config(const std::string& routing, int experts = 16, int top_k = 2, int batch = 64, int prompt = 8,
                   int steps = 6, int nodes = 2) {
  Config c;
  c.model.layers = 2;
  c.model.hidden = 8;
  c.model.ffn_hidden = 8;
  c.model.experts = experts;
  c.model.top_k = top_k;
  c.model.heads = 1;
  c.model.head_dim = 8;
  c.workload.batch_sequences = batch;
  c.workload.prompt_tokens = prompt;
  c.workload.decode_steps = steps;
  c.workload.routing = routing;
  c.cluster.nodes = nodes;
  c.cluster.gpus_per_node = 2;
  return c;
}

// Gate probabilities: a fixed, non-uniform softmax-like row per token.
std::vector<float> fake_probs(int64_t rows, int experts) {
  std::vector<float> p(static_cast<size_t>(rows) * experts);
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0;
    for (int e = 0; e < experts; ++e) sum += (p[r * experts + e] = float(1 + (r * 7 + e * 3) % 11));
    for (int e = 0; e < experts; ++e) p[r * experts + e] = float(p[r * experts + e] / sum);
  }
  return p;
}

std::vector<int64_t> counts_of(const Routing& r, int experts) {
  std::vector<int64_t> c(experts, 0);
  for (int32_t e : r.expert) ++c.at(e);
  return c;
}


}  // namespace

TEST_CASE("routing source: the gate routes by the gate's probabilities", "[routing_source]") {
  const Config c = make_config("gate");
  const auto src = RoutingSource::from_config(c);
  CHECK(src->kind() == RoutingSource::Kind::gate);
  const TokenBlock b{0, 0, 4, 0, 8};
  const std::vector<float> p = fake_probs(b.rows(), 16);
  const std::vector<double> m(16, 1.0);
  const Routing got = src->route(p, b, m);
  const Routing want = route_top_k(p, 32, 16, 2, m, true);
  CHECK(got.expert == want.expert);
  CHECK(got.weight == want.weight);
}

TEST_CASE("routing source: synthetic choices do not depend on how tokens are split into blocks", "[routing_source]") {
  for (const std::string spec : {"uniform", "zipf:1.2", "hot:0.5,local:0.6", "zipf:0.8,drift:2"}) {
    INFO(spec);
    const Config c = make_config(spec);
    const auto src = RoutingSource::from_config(c);
    const std::vector<double> m(16, 1.0);
    for (int pos0 : {0, 8, 11}) {  // prefill, decode steps 1 and 4
      const int len = pos0 == 0 ? 8 : 1;
      const TokenBlock whole{1, 0, 64, pos0, len};
      const std::vector<float> p = fake_probs(whole.rows(), 16);
      const Routing all = src->route(p, whole, m);
      // Blocks of 5 sequences (as micro-batches or ranks would see them) route the same rows alike.
      for (int seq0 = 0; seq0 < 64; seq0 += 5) {
        const int n = std::min(5, 64 - seq0);
        const TokenBlock part{1, seq0, n, pos0, len};
        const std::vector<float> pp(p.begin() + int64_t(seq0) * len * 16, p.begin() + int64_t(seq0 + n) * len * 16);
        const Routing r = src->route(pp, part, m);
        for (int64_t a = 0; a < part.rows() * 2; ++a) {
          REQUIRE(r.expert[a] == all.expert[int64_t(seq0) * len * 2 + a]);
          REQUIRE(r.weight[a] == all.weight[int64_t(seq0) * len * 2 + a]);
        }
      }
      // Deterministic: the same block twice gives the same routing; another layer differs.
      CHECK(src->route(p, whole, m).expert == all.expert);
      CHECK(src->route(p, TokenBlock{0, 0, 64, pos0, len}, m).expert != all.expert);
    }
  }
}

TEST_CASE("routing source: synthetic weights are the gate probabilities of the chosen experts", "[routing_source]") {
  const Config c = make_config("zipf:1.2");
  const auto src = RoutingSource::from_config(c);
  const TokenBlock b{0, 0, 16, 0, 8};
  const std::vector<float> p = fake_probs(b.rows(), 16);
  const Routing r = src->route(p, b, std::vector<double>(16, 1.0));
  for (int64_t t = 0; t < b.rows(); ++t) {
    const int e0 = r.expert[t * 2], e1 = r.expert[t * 2 + 1];
    CHECK(e0 != e1);
    const double sum = double(p[t * 16 + e0]) + p[t * 16 + e1];
    CHECK(r.weight[t * 2] == Approx(p[t * 16 + e0] / sum));
    CHECK(r.weight[t * 2] + r.weight[t * 2 + 1] == Approx(1.0));
  }
}

TEST_CASE("routing source: top-1 synthetic frequencies follow the distribution's shares", "[routing_source]") {
  // Gumbel top-1 samples expert e with probability share_e: 40,000 tokens put every frequency
  // within 0.01 of its share (about 4 standard deviations for the largest share).
  for (const std::string spec : {"zipf:1.2", "hot:0.5", "uniform"}) {
    INFO(spec);
    const Config c = make_config(spec, 16, 1, 5000, 8, 0, 1);
    const auto src = RoutingSource::from_config(c);
    const TokenBlock b{1, 0, 5000, 0, 8};
    const Routing r = src->route(fake_probs(b.rows(), 16), b, std::vector<double>(16, 1.0));
    const std::vector<double> share = base_popularity(parse_routing_distribution(spec, ""), 1, 16, c.model.seed);
    const std::vector<int64_t> n = counts_of(r, 16);
    for (int e = 0; e < 16; ++e) CHECK(double(n[e]) / b.rows() == Approx(share[e]).margin(0.01));
  }
}

TEST_CASE("routing source: multipliers steer synthetic choices away from loaded experts", "[routing_source]") {
  const Config c = make_config("hot:0.5");
  const auto src = RoutingSource::from_config(c);
  const TokenBlock b{0, 0, 64, 0, 8};
  const std::vector<float> p = fake_probs(b.rows(), 16);
  std::vector<double> m(16, 1.0);
  const std::vector<int64_t> before = counts_of(src->route(p, b, m), 16);
  m[0] = m[1] = 0.1;  // hot set of 16 experts: experts 0 and 1
  const std::vector<int64_t> after = counts_of(src->route(p, b, m), 16);
  CHECK(before[0] > 3 * (1024 / 16));
  CHECK(after[0] < before[0] / 2);
  CHECK(after[1] < before[1] / 2);
}

TEST_CASE("routing source: drift moves the hot set every n steps and locality favours home experts", "[routing_source]") {
  const Config c = make_config("hot:0.9,drift:2", 16, 1, 400, 4, 6, 1);
  const auto src = RoutingSource::from_config(c);
  const std::vector<double> m(16, 1.0);
  auto hot_fraction = [&](int pos0, int first_hot) {
    const TokenBlock b{0, 0, 400, pos0, 1};
    const std::vector<int64_t> n = counts_of(src->route(fake_probs(400, 16), b, m), 16);
    return double(n[first_hot] + n[first_hot + 1]) / 400;
  };
  // Steps 1 (pos 4) and 2 (pos 5) are epochs 0 and 1: hot set {0,1} then {2,3}; step 4 (pos 7): {4,5}.
  CHECK(hot_fraction(4, 0) > 0.8);
  CHECK(hot_fraction(5, 0) < 0.1);
  CHECK(hot_fraction(5, 2) > 0.8);
  CHECK(hot_fraction(7, 4) > 0.8);

  // local:0.8 on 2 nodes: sequences of node 1 (the second half) send ~ 0.8 + 0.2/2 of their choices
  // to the odd experts.
  const Config lc = make_config("uniform,local:0.8", 16, 1, 2000, 1, 0, 2);
  const auto ls = RoutingSource::from_config(lc);
  const TokenBlock second_half{0, 1000, 1000, 0, 1};
  const std::vector<int64_t> n = counts_of(ls->route(fake_probs(1000, 16), second_half, m), 16);
  int64_t odd = 0;
  for (int e = 1; e < 16; e += 2) odd += n[e];
  CHECK(double(odd) / 1000 == Approx(0.9).margin(0.03));
}

TEST_CASE("routing trace: JSON round trip, digest, exact replay", "[routing_source]") {
  const Config c = make_config("zipf:1.2", 16, 2, 4, 3, 2);
  const auto syn = RoutingSource::from_config(c);
  RoutingTrace t;
  t.num_layers = 2, t.num_experts = 16, t.top_k = 2;
  const std::vector<double> m(16, 1.0);
  for (int step = 0; step < 3; ++step) {
    const int len = step == 0 ? 3 : 1, pos0 = step == 0 ? 0 : 2 + step;
    std::vector<std::vector<int32_t>> layers;
    for (int l = 0; l < 2; ++l) {
      const TokenBlock b{l, 0, 4, pos0, len};
      layers.push_back(syn->route(fake_probs(b.rows(), 16), b, m).expert);
    }
    t.tokens_per_step.push_back(4 * len);
    t.choices.push_back(layers);
  }
  const nlohmann::json results = {{"strategies", {{{"name", "a"}, {"routing", {{"trace", t.to_json()}}}}}}};
  const RoutingTrace back = trace_from_results(results, "a", "r.json");
  CHECK(back.choices == t.choices);
  CHECK(back.digest() == t.digest());
  RoutingTrace changed = t;
  std::swap(changed.choices[1][0][0], changed.choices[1][0][1]);
  CHECK(changed.digest() != t.digest());

  Config rc = c;
  rc.workload.routing = "trace:r.json#a";
  const auto replay = RoutingSource::from_trace(rc, back);
  CHECK(replay->kind() == RoutingSource::Kind::trace);
  CHECK_FALSE(replay->steerable());
  std::vector<double> skewed(16, 1.0);
  skewed[3] = 0.1;  // multipliers do not change a replayed choice
  for (int step = 0; step < 3; ++step) {
    const int len = step == 0 ? 3 : 1, pos0 = step == 0 ? 0 : 2 + step;
    const TokenBlock second_half{1, 2, 2, pos0, len};
    const Routing r = replay->route(fake_probs(second_half.rows(), 16), second_half, skewed);
    const auto& want = t.choices[step][1];
    CHECK(r.expert == std::vector<int32_t>(want.begin() + 2 * len * 2, want.end()));
  }
}

TEST_CASE("routing trace: malformed traces and mismatched configs are errors with their path", "[routing_source]") {
  RoutingTrace t;
  t.num_layers = 1, t.num_experts = 4, t.top_k = 2;
  t.tokens_per_step = {2};
  t.choices = {{{0, 1, 2, 3}}};
  auto results_with = [&](nlohmann::json trace) {
    return nlohmann::json{{"strategies", {{{"name", "p"}, {"routing", {{"trace", trace}}}}}}};
  };
  nlohmann::json j = t.to_json();
  j["steps"][0]["experts"][0][1] = 9;
  expect_config_error([&] { trace_from_results(results_with(j), "", "x.json"); },
                      "strategies[0].routing.trace.steps[0].experts[0][1]", "expert index in [0, 4)");
  j = t.to_json();
  j["steps"][0]["experts"][0][1] = 0;
  expect_config_error([&] { trace_from_results(results_with(j), "", "x.json"); },
                      "strategies[0].routing.trace.steps[0].experts[0][1]", "repeats expert 0");
  j = t.to_json();
  j["steps"][0]["tokens"] = 3;
  expect_config_error([&] { trace_from_results(results_with(j), "", "x.json"); },
                      "strategies[0].routing.trace.steps[0].experts[0]", "tokens x top_k = 6");
  expect_config_error([&] { trace_from_results(results_with(t.to_json()), "q", "x.json"); }, "strategies",
                      "no strategy named 'q'");
  expect_config_error([&] { trace_from_results(nlohmann::json{{"strategies", nlohmann::json::array()}}, "", "x.json"); },
                      "strategies", "no strategy");

  Config c = make_config("trace:x.json", 4, 2, 2, 1, 0, 1);
  c.model.layers = 1;
  CHECK(RoutingSource::from_trace(c, t)->kind() == RoutingSource::Kind::trace);
  c.workload.decode_steps = 1;
  expect_config_error([&] { RoutingSource::from_trace(c, t); }, "workload.routing", "1 prefill + 1 decode steps");
  c.workload.decode_steps = 0;
  c.model.experts = 8;
  expect_config_error([&] { RoutingSource::from_trace(c, t); }, "workload.routing", "8 experts");
  c.model.experts = 4;
  c.workload.batch_sequences = 3;
  expect_config_error([&] { RoutingSource::from_trace(c, t); }, "workload.routing", "routes 3");
}

TEST_CASE("routing distributions: drift modifier grammar", "[routing_source]") {
  const RoutingDistribution d = parse_routing_distribution("hot:0.5,local:0.3,drift:4", "p");
  CHECK(d.drift_steps == 4);
  CHECK(d.locality == 0.3);
  CHECK(parse_routing_distribution("zipf:1,drift:1,local:0.5", "p").drift_steps == 1);
  CHECK(drift_epoch(d, 7) == 1);
  CHECK(drift_epoch(parse_routing_distribution("uniform", "p"), 100) == 0);
  expect_config_error([] { parse_routing_distribution("hot:0.5,drift:0", "w"); }, "w", "drift:0");
  expect_config_error([] { parse_routing_distribution("hot:0.5,drift:1.5", "w"); }, "w", "whole number");
  expect_config_error([] { parse_routing_distribution("hot:0.5,drift:2,drift:3", "w"); }, "w", "each once");
  // The popularity moves by E/8 experts per epoch.
  const std::vector<double> p0 = popularity_at(d, 0, 16, 1, 0), p1 = popularity_at(d, 0, 16, 1, 1);
  CHECK(p1[2] == p0[0]);
  CHECK(p1[0] == p0[14]);
}
