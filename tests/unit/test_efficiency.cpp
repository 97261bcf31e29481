// Tests for src/report/efficiency.* and src/cost/roofline.*: counts equal the cost model's, achieved
// rates scale with 1 / time, percentages and bounds are consistent with the roofline minimum, the
// placement and counted-routing parameters are used, and the simulator's efficiency block is the same formula.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>

#include "core/config.hpp"
#include "core/error.hpp"
#include "cost/cost_model.hpp"
#include "cost/roofline.hpp"
#include "placement/strategy_plan.hpp"
#include "report/efficiency.hpp"
#include "sim/hardware.hpp"
#include "sim/simulate.hpp"

namespace {

using ojson = nlohmann::ordered_json;

// 2 nodes x 2 GPUs so that both strategies use intra- and inter-node links; 3 decode steps.
moe::Config small() {
  return moe::parse_config(nlohmann::json::parse(R"({
    "name": "small",
    "model": {"layers": 2, "hidden": 16, "ffn_hidden": 32, "experts": 4, "heads": 2, "head_dim": 8},
    "workload": {"batch_sequences": 4, "prompt_tokens": 6, "decode_steps": 3},
    "cluster": {"nodes": 2, "gpus_per_node": 2},
    "strategies": [
      {"name": "baseline", "kind": "tp_pp", "tp": 2, "pp": 2, "microbatches": 2},
      {"name": "proposed", "kind": "ep", "ep": 4, "chunks": 2}
    ]
  })"));
}

constexpr int kElemBytes = 4;

ojson efficiency(const moe::Config& c, const moe::StrategyConfig& s, double prefill_s, double decode_s, double measured = 1e6) {
  const moe::Topology topo = moe::Topology::from_config(c.cluster);
  return moe::efficiency_json(c, s, topo, topo.num_ranks(), kElemBytes, moe::plan_for_strategy(c, s, topo), prefill_s, decode_s,
                              measured);
}

double num(const ojson& j) { return j.get<double>(); }

}  // namespace

TEST_CASE("efficiency: FLOPs and bytes are the cost model's", "[efficiency]") {
  const moe::Config c = small();
  moe::CostOptions o;
  o.elem_bytes = kElemBytes;
  for (const auto& s : c.strategies) {
    INFO(s.name);
    const moe::CostModel model(c, s, o);
    const ojson e = efficiency(c, s, 1.0, 0.1, 12345);
    CHECK(num(e["cost_model_flops_per_iteration"]) == Approx(model.iteration_totals().flops()).epsilon(1e-12));
    CHECK(num(e["flops_per_iteration"]) == 12345);  // the backend's counter, passed through
    CHECK(num(e["flops_counter_vs_cost_model"]) == Approx(12345 / model.iteration_totals().flops()));
    const moe::CostTotals pre = model.totals(model.prefill());
    CHECK(num(e["prefill"]["flops"]) == Approx(pre.flops()).epsilon(1e-12));
    CHECK(num(e["prefill"]["hbm_bytes"]) == Approx(pre.hbm_bytes()).epsilon(1e-12));
    CHECK(num(e["prefill"]["intra_node_bytes"]) == Approx(pre.links.intra_bytes).epsilon(1e-12));
    CHECK(num(e["prefill"]["inter_node_bytes"]) == Approx(pre.links.inter_bytes).epsilon(1e-12));
    CHECK(num(e["prefill"]["max_intra_node_link_bytes"]) == Approx(pre.links.max_port()).epsilon(1e-12));
    CHECK(num(e["prefill"]["max_inter_node_link_bytes"]) == Approx(pre.links.max_nic()).epsilon(1e-12));
    double decode_flops = 0;
    for (int t = 0; t < c.workload.decode_steps; ++t) decode_flops += model.totals(model.decode(t)).flops();
    CHECK(num(e["decode_step"]["flops"]) == Approx(decode_flops / c.workload.decode_steps).epsilon(1e-12));
    CHECK(num(e["prefill"]["flops"]) + c.workload.decode_steps * num(e["decode_step"]["flops"]) ==
          Approx(num(e["cost_model_flops_per_iteration"])).epsilon(1e-12));
    for (const char* step : {"prefill", "decode_step"}) {
      CHECK(num(e[step]["flops"]) > 0);
      CHECK(num(e[step]["hbm_bytes"]) > 0);
      CHECK(num(e[step]["max_intra_node_link_bytes"]) > 0);
      CHECK(num(e[step]["max_inter_node_link_bytes"]) > 0);
    }
  }
}

TEST_CASE("efficiency: halving the measured time doubles the achieved rates", "[efficiency]") {
  const moe::Config c = small();
  for (const auto& s : c.strategies) {
    INFO(s.name);
    const ojson slow = efficiency(c, s, 2.0, 0.2), fast = efficiency(c, s, 1.0, 0.1);
    for (const char* step : {"prefill", "decode_step"}) {
      INFO(step);
      for (const char* key : {"flop_s", "hbm_bytes_s", "max_intra_node_link_bytes_s", "max_inter_node_link_bytes_s"})
        CHECK(num(fast[step]["achieved"][key]) == Approx(2 * num(slow[step]["achieved"][key])));
      for (const char* key : {"compute", "memory", "network", "intra_node_link", "inter_node_link"})
        CHECK(num(fast[step]["percent_of_peak"][key]) == Approx(2 * num(slow[step]["percent_of_peak"][key])));
      // The roofline does not depend on the measurement.
      CHECK(num(fast[step]["roofline_min_time_s"]) == Approx(num(slow[step]["roofline_min_time_s"])));
      CHECK(fast[step]["bound"] == slow[step]["bound"]);
      CHECK(num(slow[step]["time_over_roofline_min"]) == Approx(2 * num(fast[step]["time_over_roofline_min"])));
    }
  }
}

TEST_CASE("efficiency: above the roofline minimum every percentage is above 0 and at most 100, and the bound is the largest term",
          "[efficiency]") {
  const moe::Config c = small();
  for (const auto& s : c.strategies) {
    INFO(s.name);
    const ojson probe = efficiency(c, s, 1.0, 1.0);
    const double pre_min = num(probe["prefill"]["roofline_min_time_s"]);
    const double dec_min = num(probe["decode_step"]["roofline_min_time_s"]);
    REQUIRE(pre_min > 0);
    REQUIRE(dec_min > 0);
    for (double factor : {1.0, 1.5, 40.0}) {
      INFO("measured = roofline minimum x " << factor);
      const ojson e = efficiency(c, s, factor * pre_min, factor * dec_min);
      for (const char* step : {"prefill", "decode_step"}) {
        INFO(step);
        const ojson& x = e[step];
        for (const char* key : {"compute", "memory", "network", "intra_node_link", "inter_node_link"}) {
          CHECK(num(x["percent_of_peak"][key]) > 0);
          CHECK(num(x["percent_of_peak"][key]) <= Approx(100));
        }
        const ojson& m = x["roofline_min_s"];
        const double largest = std::max({num(m["compute"]), num(m["memory"]), num(m["network"])});
        const std::string bound = x["bound"];
        REQUIRE((bound == "compute" || bound == "memory" || bound == "network"));
        CHECK(num(m[bound]) == largest);
        CHECK(num(x["roofline_min_time_s"]) == largest);
        // The bound resource runs at 100 / factor % of its peak; the others at no more.
        CHECK(num(x["percent_of_peak"][bound]) == Approx(100 / factor));
        for (const char* key : {"compute", "memory", "network"})
          CHECK(num(x["percent_of_peak"][key]) <= Approx(num(x["percent_of_peak"][bound])));
        CHECK(num(x["time_over_roofline_min"]) == Approx(factor));
      }
    }
  }
}

TEST_CASE("roofline: bound names and peaks", "[efficiency]") {
  CHECK(std::string(moe::roofline_bound(1, 2, 3)) == "network");
  CHECK(std::string(moe::roofline_bound(3, 2, 1)) == "compute");
  CHECK(std::string(moe::roofline_bound(1, 3, 2)) == "memory");
  CHECK(std::string(moe::roofline_bound(2, 2, 1)) == "compute");  // ties: network, then compute
  CHECK(std::string(moe::roofline_bound(0, 0, 0)) == "none");
  const moe::Config c = small();
  const moe::RooflinePeaks p = moe::roofline_peaks(c.cluster);
  CHECK(p.flop_s == Approx(c.cluster.gpu.peak_tflops * 1e12 * 4));
  CHECK(p.hbm_bytes_s == Approx(c.cluster.gpu.hbm_gb_s * 1e9 * 4));
  CHECK(p.intra_link_bytes_s == Approx(c.cluster.intra_node.bandwidth_gb_s * 1e9));
  CHECK(p.inter_link_bytes_s == Approx(c.cluster.inter_node.bandwidth_gb_s * 1e9));
}

TEST_CASE("efficiency: without decode steps or time nothing is divided by zero", "[efficiency]") {
  moe::Config c = small();
  c.workload.decode_steps = 0;
  const ojson e = efficiency(c, c.strategies[1], 0.5, 0.0);
  CHECK(num(e["decode_step"]["flops"]) == 0);
  CHECK(e["decode_step"]["bound"] == "none");
  CHECK(e["decode_step"]["time_over_roofline_min"].is_null());
  CHECK(num(e["decode_step"]["percent_of_peak"]["compute"]) == 0);
  CHECK(num(e["prefill"]["percent_of_peak"]["compute"]) > 0);
}

TEST_CASE("efficiency: the ep placement given is the one costed", "[efficiency]") {
  moe::Config c = small();
  c.model.experts = 2;  // top-2 of 2: every token goes to both experts; 4 ranks hold 2 replicas each
  const moe::StrategyConfig& ep = c.strategies[1];
  const moe::Topology topo = moe::Topology::from_config(c.cluster);
  // Round-robin replicas (ranks 0, 2 host expert 0; 1, 3 expert 1): both experts on every node, nothing
  // crosses nodes. The plan below puts expert 0 on node 0 and expert 1 on node 1.
  const moe::Placement local = moe::plan_for_strategy(c, ep, topo);
  moe::Placement split = local;
  for (auto& lp : split.layers) {
    lp.replicas = {{0, 1}, {2, 3}};
    lp.slots = {{0}, {0}, {1}, {1}};
  }
  const ojson a = moe::efficiency_json(c, ep, topo, 4, kElemBytes, local, 1.0, 0.1, 1e6);
  const ojson b = moe::efficiency_json(c, ep, topo, 4, kElemBytes, split, 1.0, 0.1, 1e6);
  CHECK(num(a["prefill"]["inter_node_bytes"]) == 0);
  CHECK(num(b["prefill"]["inter_node_bytes"]) > 0);
  CHECK(num(b["cost_model_flops_per_iteration"]) == Approx(num(a["cost_model_flops_per_iteration"])));
  moe::Placement short_plan = local;
  short_plan.layers.pop_back();
  CHECK_THROWS_AS(moe::efficiency_json(c, ep, topo, 4, kElemBytes, short_plan, 1.0, 0.1, 1e6), moe::Error);
  CHECK_THROWS_AS(moe::efficiency_json(c, ep, topo, 8, kElemBytes, local, 1.0, 0.1, 1e6), moe::Error);
}

TEST_CASE("efficiency: the simulator reports the same block for its predicted times", "[efficiency]") {
  const moe::Config c = small();
  moe::SimulateOptions o;
  o.hardware = moe::default_profile(c.cluster);
  o.backend = "cpu";  // 4-byte elements, as kElemBytes
  o.feasible_variant = false;
  for (const auto& s : c.strategies) {
    INFO(s.name);
    const ojson sim = moe::simulate_strategy(c, s, o);
    const double pre_s = num(sim["prefill"]["time_s"]["mean"]);
    const double dec_s = num(sim["decode"]["tpot_ms"]["mean"]) / 1e3;
    const ojson run = efficiency(c, s, pre_s, dec_s);
    for (const char* step : {"prefill", "decode_step"}) {
      INFO(step);
      CHECK(sim["efficiency"][step]["bound"] == run[step]["bound"]);
      for (const char* key : {"compute", "memory", "network"})
        CHECK(num(sim["efficiency"][step]["percent_of_peak"][key]) == Approx(num(run[step]["percent_of_peak"][key])));
      CHECK(num(sim["efficiency"][step]["roofline_min_time_s"]) == Approx(num(run[step]["roofline_min_time_s"])));
    }
    // A prediction from achievable rates cannot beat the peaks.
    CHECK(num(sim["efficiency"]["prefill"]["time_over_roofline_min"]) >= 1);
    CHECK(num(sim["efficiency"]["decode_step"]["time_over_roofline_min"]) >= 1);
  }
}

TEST_CASE("efficiency: ep link bytes follow the run's counted routing per source", "[efficiency]") {
  const moe::Config c = small();
  const moe::StrategyConfig& ep = c.strategies[1];
  const moe::Topology topo = moe::Topology::from_config(c.cluster);
  const moe::Placement plan = moe::plan_for_strategy(c, ep, topo);
  const int L = c.model.layers, G = 4, E = c.model.experts;
  const int64_t per_source = int64_t(c.workload.batch_sequences) / G * (c.workload.prompt_tokens + c.workload.decode_steps) *
                             c.model.top_k;
  // Every source keeps all its assignments on its own rank's expert: nothing crosses a link.
  moe::SourceCounts chosen(L, std::vector<std::vector<int64_t>>(G, std::vector<int64_t>(E, 0)));
  moe::SourceCounts dropped = chosen;
  for (int l = 0; l < L; ++l)
    for (int g = 0; g < G; ++g) {
      chosen[l][g][plan.layers[l].slots[g].at(0)] = per_source + 3;
      dropped[l][g][plan.layers[l].slots[g].at(0)] = 3;
    }
  const moe::SourceCounts kept = moe::kept_assignments(chosen, dropped);
  CHECK(kept[0][0][plan.layers[0].slots[0][0]] == per_source);
  const ojson local = moe::efficiency_json(c, ep, topo, G, kElemBytes, plan, 1.0, 0.1, 1e6, kept);
  const ojson uniform = efficiency(c, ep, 1.0, 0.1);
  for (const char* step : {"prefill", "decode_step"}) {
    CHECK(num(local[step]["intra_node_bytes"]) == 0);
    CHECK(num(local[step]["inter_node_bytes"]) == 0);
    CHECK(num(uniform[step]["inter_node_bytes"]) > 0);
  }
  CHECK(num(local["cost_model_flops_per_iteration"]) == Approx(num(uniform["cost_model_flops_per_iteration"])));
  CHECK(local["source"].get<std::string>().find("counted routing") != std::string::npos);
  // Every source sends everything to rank 3's expert: the iteration's link bytes are the counted rows.
  moe::SourceCounts remote(L, std::vector<std::vector<int64_t>>(G, std::vector<int64_t>(E, 0)));
  for (int l = 0; l < L; ++l)
    for (int g = 0; g < G; ++g) remote[l][g][plan.layers[l].slots[3].at(0)] = per_source;
  const ojson r = moe::efficiency_json(c, ep, topo, G, kElemBytes, plan, 1.0, 0.1, 1e6, remote);
  const double row_bytes = double(c.model.hidden) * kElemBytes;
  const double iteration_links = num(r["prefill"]["intra_node_bytes"]) + num(r["prefill"]["inter_node_bytes"]) +
                                 c.workload.decode_steps * (num(r["decode_step"]["intra_node_bytes"]) + num(r["decode_step"]["inter_node_bytes"]));
  CHECK(iteration_links == Approx(3.0 * per_source * L * 2 * row_bytes));  // 3 remote sources, dispatch + combine
  CHECK_THROWS_AS(moe::kept_assignments(chosen, moe::SourceCounts(1)), moe::Error);
}
