// Tests for src/cost/ep_receive.*: the inclusion-probability bound against closed forms (uniform
// shares; top-2 draws without replacement), its limits, and the receive rows per routing kind,
// with the capacity cap. (That the rows bound what runs receive is tests/mpi/test_memory_estimate.cpp's.)
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/config.hpp"
#include "core/routing_distribution.hpp"
#include "cost/ep_receive.hpp"

using namespace moe;

namespace {

// Inclusion probability of expert e in 2 draws without replacement: p_e + sum_j p_j p_e / (1 - p_j).
double top2_inclusion(const std::vector<double>& p, int e) {
  double pi = p[e];
  for (size_t j = 0; j < p.size(); ++j)
    if (static_cast<int>(j) != e) pi += p[j] * p[e] / (1 - p[j]);
  return pi;
}

Config config_with(const std::string& routing, int ep, double capacity_factor = 0) {
  nlohmann::json j = nlohmann::json::parse(R"({
    "name": "rx",
    "model": {"layers": 2, "hidden": 8, "ffn_hidden": 16, "experts": 16, "top_k": 2, "heads": 2, "head_dim": 4},
    "workload": {"batch_sequences": 8, "prompt_tokens": 32, "decode_steps": 2},
    "cluster": {"nodes": 1, "gpus_per_node": 4},
    "strategies": [{"name": "ep", "kind": "ep", "ep": 4}]
  })");
  j["workload"]["routing"] = routing;
  j["cluster"]["gpus_per_node"] = ep;
  j["strategies"][0]["ep"] = ep;
  if (capacity_factor > 0) j["strategies"][0]["load_balancing"] = {{"capacity_factor", capacity_factor}};
  return parse_config(j);
}

}  // namespace

TEST_CASE("ep receive: inclusion bound equals h*k/E for uniform shares, up to the sum's step", "[memory]") {
  const std::vector<double> uniform(16, 1.0 / 16);
  for (int h : {1, 4, 8}) {
    const double bound = top_inclusion_sum(uniform, 2, h);
    CHECK(bound >= h * 2.0 / 16);
    CHECK(bound <= h * 2.0 / 16 + h / 256.0);
  }
}

TEST_CASE("ep receive: inclusion bound against two draws without replacement", "[memory]") {
  for (const char* spec : {"hot:0.9", "hot:0.5", "zipf:1.2", "zipf:0.5"}) {
    std::vector<double> p = base_popularity(parse_routing_distribution(spec, "x"), 0, 16, 1234);
    std::vector<double> pi(p.size());
    for (size_t e = 0; e < p.size(); ++e) pi[e] = top2_inclusion(p, static_cast<int>(e));
    std::sort(pi.begin(), pi.end(), std::greater<double>());
    for (int h : {1, 2, 4, 8}) {
      double exact = 0;
      for (int e = 0; e < h; ++e) exact += pi[e];
      INFO(spec << " hosted " << h << ": exact " << exact);
      const double bound = top_inclusion_sum(p, 2, h);
      CHECK(bound >= exact - 1e-12);
      CHECK(bound <= exact + h / 256.0 + 1e-12);
    }
  }
}

TEST_CASE("ep receive: the bound is at most min(hosted, k); k or fewer possible experts are all chosen", "[memory]") {
  CHECK(top_inclusion_sum({0.97, 0.01, 0.01, 0.01}, 2, 4) <= 2);
  CHECK(top_inclusion_sum({0.5, 0.5, 0, 0}, 2, 1) == 1);
  CHECK(top_inclusion_sum({0.5, 0.5, 0, 0}, 2, 3) == 2);
  CHECK(top_inclusion_sum({0.25, 0.25, 0.25, 0.25}, 4, 2) == 2);
}

TEST_CASE("ep receive: rows per routing kind and the capacity cap", "[memory]") {
  // 4 ranks, 2 sequences x 32 tokens each: one part of 64 rows, a = 128 balanced assignments.
  const Config gate = config_with("gate", 4);
  CHECK(ep_receive_rows(gate, gate.strategies[0]) == 288);   // ceil(2.25 * 128)
  // Uniform: h*k/E = 0.5 per token, N = 4 * 64 * 0.5 = 128 (+ up to 4/256 from the sum's step),
  // plus 4 sigma sqrt(2 * 128) = 64 and 2.
  const Config uniform = config_with("uniform", 4);
  const int64_t u = ep_receive_rows(uniform, uniform.strategies[0]);
  CHECK(u >= 128 + 64 + 2);
  CHECK(u <= 128 + 64 + 2 + 8);
  // hot:0.9 puts both hot experts among some rank's 4: nearly two of each token's choices.
  const Config hot = config_with("hot:0.9", 4);
  const int64_t h = ep_receive_rows(hot, hot.strategies[0]);
  CHECK(h > 2 * 128);
  CHECK(h <= 4 * 64 * 2);   // every assignment of every rank
  // capacity_factor 1: each expert keeps at most 8*32*2/16 = 32 assignments, 4 hosted: 128 rows.
  const Config capped = config_with("hot:0.9", 4, 1.0);
  CHECK(ep_receive_rows(capped, capped.strategies[0]) == 128);
}

TEST_CASE("ep receive: past the integral's budget the bound is every choice", "[memory]") {
  // zipf with local:p on 64 layers x 64 nodes x 256 experts: too many share vectors to integrate.
  Config c = parse_config(nlohmann::json::parse(R"({
    "name": "wide",
    "model": {"layers": 64, "hidden": 8, "ffn_hidden": 16, "experts": 256, "top_k": 2, "heads": 2, "head_dim": 4},
    "workload": {"batch_sequences": 64, "prompt_tokens": 4, "decode_steps": 2, "routing": "zipf:1.2,local:0.5"},
    "cluster": {"nodes": 64, "gpus_per_node": 1},
    "strategies": [{"name": "ep", "kind": "ep", "ep": 64}]
  })"));
  // 64 sources x 4 prefill rows x min(hosted = 4, k = 2).
  CHECK(ep_receive_rows(c, c.strategies[0]) == 64 * 4 * 2);
}
