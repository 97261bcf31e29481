// The cost model against the runtime's own counters, step by step: FLOPs summed over ranks
// (compute.flops(), both strategies) and the bytes MpiComm counts per link: for tp_pp (routing
// independent) and for ep fed with the routing the runtime used in that step (each rank's kept
// assignments per expert, StepLoad::chosen_here - dropped_here, gathered into [L][G][E]): intra- and
// inter-node bytes, busiest NVLink port and busiest NIC, including replicated experts, chunks,
// skewed routing with locality and capacity drops, and expert shards (ep with expert_tp > 1).
#include <catch2/catch.hpp>

#include <memory>

#include "backend/factory.hpp"
#include "cost/cost_model.hpp"
#include "mpi_test_util.hpp"
#include "placement/strategy_plan.hpp"
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

// The step's kept assignments per local token of every rank: [L][G][E].
std::shared_ptr<const moe::SourceAssignments> kept_per_token(const moe::StepLoad& load, moe::Comm& world, int64_t local_rows) {
  const int L = static_cast<int>(load.chosen_here.size());
  const int E = L ? static_cast<int>(load.chosen_here[0].size()) : 0;
  const int G = world.size(), me = world.rank();
  std::vector<int64_t> flat(size_t(L) * G * E, 0);
  for (int l = 0; l < L; ++l)
    for (int e = 0; e < E; ++e) flat[(size_t(l) * G + me) * E + e] = load.chosen_here[l][e] - load.dropped_here[l][e];
  world.all_reduce_sum_host(flat);
  auto a = std::make_shared<moe::SourceAssignments>(L, std::vector<std::vector<double>>(G, std::vector<double>(E)));
  for (int l = 0; l < L; ++l)
    for (int g = 0; g < G; ++g)
      for (int e = 0; e < E; ++e) (*a)[l][g][e] = double(flat[(size_t(l) * G + g) * E + e]) / double(local_rows);
  return a;
}

// Runs the prefill and every decode step of each strategy, then compares each step with the cost model.
void compare_steps(const json& cfg_json) {
  moe::Config c = moe::parse_config(cfg_json);
  moe::validate_for_run(c, world_size(), 4, "cpu");
  moe::Backends b = moe::make_backends("cpu", c.model.dtype);
  const moe::Topology topo = moe::Topology::from_config(c.cluster);
  const auto routing = moe::RoutingSource::from_config(c);
  for (const moe::StrategyConfig& spec : c.strategies) {
    INFO("strategy " << spec.name << " (" << spec.kind << ")");
    moe::StrategyContext ctx{c, spec, *b.compute, *b.world, topo, *routing};
    auto strategy = moe::make_strategy(ctx);
    moe::PhaseTimer timer(*b.compute);
    strategy->reset();
    std::vector<Counted> got;
    moe::CostOptions o;
    o.elem_bytes = 4;  // the CPU backend moves fp32
    for (int step = -1; step < c.workload.decode_steps; ++step) {
      b.compute->reset_counters();
      b.world->traffic().reset();
      if (step < 0)
        strategy->prefill(timer);
      else
        strategy->decode_step(timer);
      timer.finish_step();
      got.push_back(counted(*b.compute, *b.world));
      if (spec.kind == "ep") {
        const int64_t rows = int64_t(c.workload.batch_sequences) / world_size() * (step < 0 ? c.workload.prompt_tokens : 1);
        o.routing.step_source_assignments.push_back(kept_per_token(strategy->step_load(), *b.world, rows));
      }
    }
    if (spec.kind == "ep") o.placement = std::make_shared<const moe::Placement>(moe::plan_for_strategy(c, spec, topo));
    const moe::CostModel model(c, spec, o);  // on every rank: all of them agree on errors
    if (world_rank() != 0) continue;
    for (int step = -1; step < c.workload.decode_steps; ++step) {
      INFO("step " << step << " (-1 = prefill)");
      const Counted& g = got[size_t(step + 1)];
      const moe::CostTotals want = model.totals(step < 0 ? model.prefill() : model.decode(step));
      CHECK(g.flops == Approx(want.flops()).epsilon(1e-12));
      const moe::TrafficSummary sum = moe::summarize_traffic(topo, c.cluster.inter_node.nics_per_node, g.bytes);
      if (spec.kind == "tp_pp") {
        CHECK(double(sum.intra_node_bytes) == want.links.intra_bytes);
        CHECK(double(sum.inter_node_bytes) == want.links.inter_bytes);
        CHECK(double(sum.max_intra_link_bytes) == want.links.max_port_sent());
        CHECK(double(sum.max_inter_link_bytes) == want.links.max_nic_sent());
      } else {
        // Rows per link are exact integers; the model's per-chunk scaling adds only rounding.
        CHECK(double(sum.intra_node_bytes) == Approx(want.links.intra_bytes).epsilon(1e-12).margin(1e-6));
        CHECK(double(sum.inter_node_bytes) == Approx(want.links.inter_bytes).epsilon(1e-12).margin(1e-6));
        CHECK(double(sum.max_intra_link_bytes) == Approx(want.links.max_port_sent()).epsilon(1e-12).margin(1e-6));
        CHECK(double(sum.max_inter_link_bytes) == Approx(want.links.max_nic_sent()).epsilon(1e-12).margin(1e-6));
        for (size_t i = 0; i < sum.port_bytes.size(); ++i)
          CHECK(double(sum.port_bytes[i]) == Approx(want.links.port_sent[i]).epsilon(1e-12).margin(1e-6));
        for (size_t i = 0; i < sum.nic_bytes.size(); ++i)
          CHECK(double(sum.nic_bytes[i]) == Approx(want.links.nic_sent[i]).epsilon(1e-12).margin(1e-6));
        if (step < 0) CHECK(sum.intra_node_bytes + sum.inter_node_bytes > 0);  // the comparison is not vacuous
        // Every row dispatched comes back: the byte matrix is symmetric.
        for (size_t s = 0; s < g.bytes.size(); ++s)
          for (size_t d = 0; d < g.bytes.size(); ++d) CHECK(g.bytes[s][d] == g.bytes[d][s]);
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

TEST_CASE("cost model equals runtime counters: skewed routing with locality and capacity drops on 2 nodes", "[np4]") {
  REQUIRE(world_size() == 4);
  json cap = lb("none");
  cap["capacity_factor"] = 1.0;
  json cfg = small_config(2, 2, 8, 2, 8,
                          json::array({{{"name", "tp_pp"}, {"kind", "tp_pp"}, {"tp", 2}, {"pp", 2}, {"microbatches", 2}},
                                       {{"name", "ep-rr"}, {"kind", "ep"}, {"ep", 4}, {"chunks", 2}, {"placement", "round_robin"}},
                                       {{"name", "ep-topo"}, {"kind", "ep"}, {"ep", 4}, {"chunks", 3},
                                        {"placement", "topology_aware"}, {"load_balancing", lb("paper")}},
                                       {{"name", "ep-capacity"}, {"kind", "ep"}, {"ep", 4}, {"load_balancing", cap}}}));
  cfg["workload"]["routing"] = "zipf:1.2,local:0.5";
  compare_steps(cfg);
}

TEST_CASE("cost model equals runtime counters: 3 experts on 6 ranks with replicas and chunks", "[np6]") {
  REQUIRE(world_size() == 6);
  json cfg = small_config(2, 3, 3, 3, 6,
                          json::array({{{"name", "tp3pp2"}, {"kind", "tp_pp"}, {"tp", 3}, {"pp", 2}, {"microbatches", 3}},
                                       {{"name", "ep6"}, {"kind", "ep"}, {"ep", 6}, {"chunks", 3}, {"load_balancing", lb("paper")}},
                                       {{"name", "ep6-topo"}, {"kind", "ep"}, {"ep", 6}, {"chunks", 2},
                                        {"placement", "topology_aware"}, {"placement_profile", "hot:0.5,local:0.7"}}}));
  compare_steps(cfg);
}

TEST_CASE("cost model equals runtime counters: replicas under skewed local routing", "[np6]") {
  REQUIRE(world_size() == 6);
  json cfg = small_config(2, 3, 3, 3, 6,
                          json::array({{{"name", "ep6-balanced"}, {"kind", "ep"}, {"ep", 6}, {"chunks", 2}, {"placement", "balanced"}},
                                       {{"name", "ep6-topo"}, {"kind", "ep"}, {"ep", 6}, {"chunks", 3},
                                        {"placement", "topology_aware"}, {"load_balancing", lb("paper")}}}));
  cfg["workload"]["routing"] = "zipf:1.5,local:0.5";
  compare_steps(cfg);
}

TEST_CASE("cost model equals runtime counters: ep 2 x expert_tp 2, skewed local routing, capacity and overlap on 2 nodes", "[np4]") {
  REQUIRE(world_size() == 4);
  json cap = lb("paper");
  cap["capacity_factor"] = 1.0;
  json topo = {{"name", "etp-topo"}, {"kind", "ep"}, {"ep", 2}, {"expert_tp", 2}, {"chunks", 2}, {"overlap", "chunked"},
               {"placement", "topology_aware"}};
  json cfg = small_config(2, 2, 8, 2, 8,
                          json::array({{{"name", "etp"}, {"kind", "ep"}, {"ep", 2}, {"expert_tp", 2}, {"chunks", 3}},
                                       {{"name", "etp-capacity"}, {"kind", "ep"}, {"ep", 2}, {"expert_tp", 2},
                                        {"overlap", "two_batch"}, {"load_balancing", cap}},
                                       topo}));
  cfg["workload"]["routing"] = "zipf:1.2,local:0.5";
  compare_steps(cfg);
}

TEST_CASE("cost model equals runtime counters: ep 4 x expert_tp 2 with several experts per group and with replicas", "[np8]") {
  REQUIRE(world_size() == 8);
  for (int experts : {8, 3}) {
    INFO(experts << " experts");
    compare_steps(small_config(2, 4, experts, 2, 8,
                               json::array({{{"name", "etp"}, {"kind", "ep"}, {"ep", 4}, {"expert_tp", 2}, {"chunks", 2},
                                             {"load_balancing", lb("paper")}},
                                            {{"name", "etp4"}, {"kind", "ep"}, {"ep", 2}, {"expert_tp", 4}}})));
  }
}

TEST_CASE("cost model equals runtime counters on the shipped 16-rank config", "[np16]") {
  REQUIRE(world_size() == 16);
  json cfg = moe::testing::load_json("configs/cpu-16rank.json");
  cfg["workload"]["decode_steps"] = 2;
  compare_steps(cfg);
}

TEST_CASE("cost model equals runtime counters on the shipped 16-rank zipf config", "[np16]") {
  REQUIRE(world_size() == 16);
  json cfg = moe::testing::load_json("configs/cpu-16rank-zipf.json");
  cfg["workload"]["decode_steps"] = 2;
  compare_steps(cfg);
}
