// The cost model against the runtime's own counters, step by step: FLOPs summed over ranks
// (compute.flops(), both strategies, dropless, any routing) and, for tp_pp, the bytes MpiComm counts
// per link (routing independent). EP link bytes depend on the actual routing: only their symmetry
// (combine returns what dispatch sent) and the expected-routing bound are checked.
#include <catch2/catch.hpp>

#include "backend/factory.hpp"
#include "cost/cost_model.hpp"
#include "mpi_test_util.hpp"
#include "strategies/strategy.hpp"

using moe::testing::small_config;
using moe::testing::world_rank;
using moe::testing::world_size;
using nlohmann::json;

namespace {

struct Counted {
  double flops = 0;                              // all ranks
  std::vector<std::vector<int64_t>> bytes;       // [src][dst]
};

// Every rank's counters after one step, reduced over the world.
Counted counted(moe::ComputeBackend& compute, moe::Comm& world) {
  std::vector<int64_t> f{compute.flops()};
  world.all_reduce_sum_host(f);
  const int n = world.size();
  std::vector<int64_t> flat(size_t(n) * n, 0);
  for (int d = 0; d < n; ++d) flat[size_t(world.rank()) * n + d] = world.traffic().bytes_to_rank.at(d);
  world.all_reduce_sum_host(flat);
  Counted c;
  c.flops = double(f[0]);
  c.bytes.assign(n, std::vector<int64_t>(n));
  for (int s = 0; s < n; ++s)
    for (int d = 0; d < n; ++d) c.bytes[s][d] = flat[size_t(s) * n + d];
  return c;
}

// Runs the prefill and every decode step of each strategy, comparing each step with the cost model.
void compare_steps(const json& cfg_json) {
  moe::Config c = moe::parse_config(cfg_json);
  moe::validate_for_run(c, world_size(), 4, "cpu");
  moe::Backends b = moe::make_backends("cpu", c.model.dtype);
  const moe::Topology topo = moe::Topology::from_config(c.cluster);
  moe::CostOptions o;
  o.elem_bytes = 4;  // the CPU backend moves fp32
  for (const moe::StrategyConfig& spec : c.strategies) {
    INFO("strategy " << spec.name << " (" << spec.kind << ")");
    const auto routing = moe::RoutingSource::from_config(c);
    moe::StrategyContext ctx{c, spec, *b.compute, *b.world, topo, *routing};
    auto strategy = moe::make_strategy(ctx);
    const moe::CostModel model(c, spec, o);
    moe::PhaseTimer timer(*b.compute);
    strategy->reset();
    for (int step = -1; step < c.workload.decode_steps; ++step) {
      INFO("step " << step << " (-1 = prefill)");
      b.compute->reset_counters();
      b.world->traffic().reset();
      if (step < 0)
        strategy->prefill(timer);
      else
        strategy->decode_step(timer);
      timer.finish_step();
      const Counted got = counted(*b.compute, *b.world);
      const moe::CostTotals want = model.totals(step < 0 ? model.prefill() : model.decode(step));
      if (world_rank() != 0) continue;
      CHECK(got.flops == Approx(want.flops()).epsilon(1e-12));
      const moe::TrafficSummary sum = moe::summarize_traffic(topo, c.cluster.inter_node.nics_per_node, got.bytes);
      if (spec.kind == "tp_pp") {
        CHECK(double(sum.intra_node_bytes) == want.links.intra_bytes);
        CHECK(double(sum.inter_node_bytes) == want.links.inter_bytes);
        CHECK(double(sum.max_intra_link_bytes) == want.links.max_port_sent());
        CHECK(double(sum.max_inter_link_bytes) == want.links.max_nic_sent());
      } else {
        // Every row dispatched comes back: the byte matrix is symmetric.
        for (size_t s = 0; s < got.bytes.size(); ++s)
          for (size_t d = 0; d < got.bytes.size(); ++d) CHECK(got.bytes[s][d] == got.bytes[d][s]);
        // At most every assignment leaves its rank, twice per layer.
        const double rows = double(c.workload.batch_sequences) * (step < 0 ? c.workload.prompt_tokens : 1);
        CHECK(double(sum.intra_node_bytes + sum.inter_node_bytes) <=
              2.0 * c.model.layers * rows * c.model.top_k * c.model.hidden * 4);
      }
    }
  }
}

json lb(const std::string& policy) { return {{"policy", policy}, {"update_interval_tokens", 8}}; }

}  // namespace

TEST_CASE("cost model equals runtime counters: tp 2 x pp 2 and ep 4 with chunks", "[np4]") {
  REQUIRE(world_size() == 4);
  compare_steps(small_config(1, 4, 8, 4, 8,
                             json::array({{{"name", "tp_pp"}, {"kind", "tp_pp"}, {"tp", 2}, {"pp", 2}, {"microbatches", 2}},
                                          {{"name", "ep"}, {"kind", "ep"}, {"ep", 4}, {"chunks", 3}}})));
}

TEST_CASE("cost model equals runtime counters: 2 nodes, tp across a stage boundary, balancing on", "[np4]") {
  REQUIRE(world_size() == 4);
  json cfg = small_config(2, 2, 3, 2, 4,
                          json::array({{{"name", "tp_pp"}, {"kind", "tp_pp"}, {"tp", 2}, {"pp", 2}, {"microbatches", 4},
                                        {"load_balancing", lb("paper")}},
                                       {{"name", "ep"}, {"kind", "ep"}, {"ep", 4}, {"load_balancing", lb("paper")}}}));
  cfg["cluster"]["inter_node"]["nics_per_node"] = 1;
  compare_steps(cfg);
}

TEST_CASE("cost model equals runtime counters: tp 4 x pp 1 and attention off", "[np4]") {
  REQUIRE(world_size() == 4);
  json cfg = small_config(1, 4, 5, 4, 4,
                          json::array({{{"name", "tp"}, {"kind", "tp_pp"}, {"tp", 4}, {"pp", 1}, {"microbatches", 2}},
                                       {{"name", "ep"}, {"kind", "ep"}, {"ep", 4}, {"chunks", 2}}}));
  cfg["model"]["attention"] = false;
  compare_steps(cfg);
}

TEST_CASE("cost model equals runtime counters on the shipped 16-rank config", "[np16]") {
  REQUIRE(world_size() == 16);
  json cfg = moe::testing::load_json("configs/cpu-16rank.json");
  cfg["workload"]["decode_steps"] = 2;
  compare_steps(cfg);
}
