// Tests for src/sim/*: kernel and communication durations, the GPipe and EP chunk schedules on
// hand-made steps, monotonicity (more bandwidth or peak never slows), memory infeasibility reported
// with what fits, the shipped hardware profile, a well-formed sweep, and the routing assumed from
// workload.routing (synthetic distribution, trace).
#include <catch2/catch.hpp>

#include <fstream>

#include "core/config.hpp"
#include "core/error.hpp"
#include "cost/cost_model.hpp"
#include "sim/hardware.hpp"
#include "sim/simulate.hpp"
#include "schedule/schedule.hpp"
#include "sim/simulator.hpp"

namespace {

moe::Config paper() {
  std::ifstream in(std::string(MOE_SOURCE_DIR) + "/configs/paper-16xh100.json");
  return moe::parse_config(nlohmann::json::parse(in));
}

// A profile where a copy of `b` bytes takes b / 1e6 ms and nothing else costs anything.
moe::HardwareProfile unit_profile() {
  moe::HardwareProfile hw;
  hw.hbm_gb_s = 1;
  hw.hbm_efficiency = 1;
  hw.kernel_overhead_us = 0;
  hw.host_sync_us = 0;
  hw.intra_node = {1, 1, 0};
  hw.inter_node = {1, 1, 0};
  hw.collective_hop_us = 0;
  hw.alltoall_per_peer_us = 0;
  return hw;
}

moe::Op copy_op(moe::Phase p, double ms) {
  moe::Op op;
  op.phase = p;
  moe::Kernel k;
  k.kind = moe::KernelKind::copy;
  k.bytes = ms * 1e6;
  op.kernels.push_back(k);
  return op;
}

double step_ms(const moe::Config& c, const moe::StrategyConfig& s, const moe::HardwareProfile& hw, bool decode) {
  const moe::CostModel m(c, s);
  return moe::simulate_step(decode ? m.decode(0) : m.prefill(), hw).time_ms;
}

}  // namespace

TEST_CASE("simulator: kernel time is the larger of compute and memory time plus overheads", "[sim]") {
  moe::HardwareProfile hw;
  hw.peak_tflops = 100;
  hw.gemm_efficiency = 0.5;  // 50 TFLOPS
  hw.hbm_gb_s = 1000;
  hw.hbm_efficiency = 0.5;   // 500 GB/s
  hw.kernel_overhead_us = 0;
  const moe::Kernel big = moe::gemm_kernel(4096, 4096, 4096, 2);
  CHECK(moe::kernel_ms(big, hw) == Approx(big.flops / 50e9));
  const moe::Kernel thin = moe::gemm_kernel(1, 4096, 4096, 2);  // weight read dominates
  CHECK(moe::kernel_ms(thin, hw) == Approx(thin.bytes / 500e6));
  hw.kernel_overhead_us = 10;
  CHECK(moe::kernel_ms(thin, hw) == Approx(thin.bytes / 500e6 + 0.01));
}

TEST_CASE("simulator: ring all-reduce, all-to-all and p2p times", "[sim]") {
  moe::HardwareProfile hw = unit_profile();
  hw.intra_node = {100, 1, 5};  // 100 GB/s, 5 us
  moe::CommCost ar;
  ar.kind = moe::CommKind::all_reduce;
  ar.group_size = 8;
  ar.payload_bytes = 8e8;
  // 5 us + 2*(7/8)*0.8 GB / 100 GB/s = 0.005 + 14 ms
  CHECK(moe::comm_ms(ar, hw) == Approx(0.005 + 14.0));
  ar.group_size = 1;
  CHECK(moe::comm_ms(ar, hw) == 0);
  // All-to-all: the busiest port (sent or received) decides.
  const moe::Topology topo(1, 4);
  auto links = std::make_shared<moe::LinkLoads>(topo, 1);
  links->add(topo, 1, 0, 1, 1e8);
  links->add(topo, 1, 2, 1, 1e8);  // rank 1 receives 2e8
  moe::CommCost a2a;
  a2a.kind = moe::CommKind::all_to_all;
  a2a.group_size = 4;
  a2a.links = links;
  CHECK(moe::comm_ms(a2a, hw) == Approx(0.005 + 2.0));
}

TEST_CASE("simulator: GPipe schedule has (M + P - 1) stage slots", "[sim]") {
  moe::StepCost s;
  s.kind = moe::StrategyKind::tp_pp;
  s.stages = 2;
  s.microbatches = 4;
  moe::StrategyConfig spec;
  spec.kind = "tp_pp";
  spec.microbatches = 4;
  s.schedule = moe::build_tp_pp_schedule(spec, 0, 2, 1, false);
  moe::TpPpLayerCost L;
  L.expert = copy_op(moe::Phase::expert, 1.0);  // 1 ms per micro-batch per stage
  s.stage_layers.push_back(L);
  moe::attach_stage_costs(s);
  const moe::StepTiming t = moe::simulate_step(s, unit_profile());
  CHECK(t.time_ms == Approx(5.0));
  CHECK(t.phase_max_ms[static_cast<int>(moe::Phase::expert)] == Approx(4.0));
  // Stage 1 waits one slot for the first micro-batch, stage 0 one slot for the feedback: both in pp_transfer.
  CHECK(t.phase_max_ms[static_cast<int>(moe::Phase::pp_transfer)] == Approx(1.0));
  // A blocking 0.5 ms hop between stages.
  moe::HardwareProfile hw = unit_profile();
  hw.intra_node = {1, 1, 500};  // 500 us latency, zero-byte messages
  auto links = std::make_shared<moe::LinkLoads>(moe::Topology(1, 2), 1);
  s.pp_hop.comm = {moe::CommKind::p2p, links, 1, 0, 2, 1, false, 1};
  const double with_hops = moe::simulate_step(s, hw).time_ms;
  CHECK(with_hops >= 5.0 + 0.5);
  CHECK(with_hops <= 5.0 + 4 * 0.5 + 1e-9);
}

TEST_CASE("simulator: EP chunks overlap dispatch, experts and combine", "[sim]") {
  moe::StepCost s;
  s.kind = moe::StrategyKind::ep;
  moe::StrategyConfig spec;
  spec.kind = "ep";
  spec.chunks = 4;
  spec.overlap = "chunked";
  s.schedule = moe::build_ep_schedule(spec, 1, false, 4, 1);
  REQUIRE(s.schedule.parts.size() == 4);
  moe::EpLayerCost L;
  auto links = std::make_shared<moe::LinkLoads>(moe::Topology(1, 2), 1);
  links->add(moe::Topology(1, 2), 1, 0, 1, 1e6);  // 1 ms on a 1 GB/s port
  auto parts = std::make_shared<std::vector<moe::EpChunkCost>>();
  for (int c = 0; c < 4; ++c) {
    moe::EpChunkCost ch;
    ch.dispatch.phase = moe::Phase::dispatch;
    ch.dispatch.comm = {moe::CommKind::all_to_all, links, 1, 1e6, 2, 1, false, 1};
    ch.expert = copy_op(moe::Phase::expert, 1.0);
    ch.combine.phase = moe::Phase::combine;
    ch.combine.comm = ch.dispatch.comm;
    parts->push_back(ch);
  }
  L.chunks = parts;
  s.ep_layers.push_back(L);
  moe::attach_stage_costs(s);
  const moe::HardwareProfile hw = unit_profile();
  const moe::StepTiming piped = moe::simulate_step(s, hw);
  moe::StepCost in_order = s;
  in_order.schedule = moe::serialized(s.schedule);
  const moe::StepTiming serial = moe::simulate_step(in_order, hw);
  CHECK(serial.time_ms == Approx(12.0));
  CHECK(serial.comm_ms == Approx(8.0));
  CHECK(serial.exposed_comm_ms == Approx(8.0));
  // The network carries 8 ms of dispatch + combine, the compute stream 4 ms: the network bounds it.
  // d0 d1 c0 d2 c1 d3 c2 c3 back to back: the experts of chunk i run under the network's transfers.
  CHECK(piped.time_ms == Approx(8.0));
  CHECK(piped.comm_ms == Approx(8.0));
  CHECK(piped.exposed_comm_ms == Approx(4.0));
  // The same schedule with overlap none keeps program order: as slow as the serialized one.
  spec.overlap = "none";
  moe::StepCost none = s;
  none.schedule = moe::build_ep_schedule(spec, 1, false, 4, 1);
  moe::attach_stage_costs(none);  // another stage order: the stages are costed again
  CHECK(moe::simulate_step(none, hw).time_ms == Approx(12.0));
}

TEST_CASE("simulator: more bandwidth never predicts a slower step", "[sim]") {
  const moe::Config c = paper();
  moe::HardwareProfile base = moe::default_profile(c.cluster);
  for (const auto& s : c.strategies)
    for (bool decode : {false, true}) {
      INFO(s.name << (decode ? " decode" : " prefill"));
      const double t0 = step_ms(c, s, base, decode);
      for (double f : {1.5, 2.0, 10.0}) {
        moe::HardwareProfile hw = base;
        hw.intra_node.bandwidth_gb_s *= f;
        CHECK(step_ms(c, s, hw, decode) <= t0 + 1e-9);
        hw.inter_node.bandwidth_gb_s *= f;
        CHECK(step_ms(c, s, hw, decode) <= t0 + 1e-9);
        hw.hbm_gb_s *= f;
        CHECK(step_ms(c, s, hw, decode) <= t0 + 1e-9);
      }
    }
}

TEST_CASE("simulator: doubling peak FLOPs never slows a compute-bound phase", "[sim]") {
  const moe::Config c = paper();
  const moe::HardwareProfile base = moe::default_profile(c.cluster);
  moe::HardwareProfile fast = base;
  fast.peak_tflops *= 2;
  int compute_bound = 0;
  for (const auto& s : c.strategies) {
    const moe::CostModel m(c, s);
    const moe::StepTiming a = moe::simulate_step(m.prefill(), base), b = moe::simulate_step(m.prefill(), fast);
    CHECK(b.time_ms <= a.time_ms);
    for (int p = 0; p < moe::kNumPhases; ++p) {
      if (a.roofline[p].bound() != "compute") continue;
      ++compute_bound;
      CHECK(b.roofline[p].compute_ms == Approx(a.roofline[p].compute_ms / 2));
      CHECK(b.phase_max_ms[p] <= a.phase_max_ms[p]);
    }
  }
  CHECK(compute_bound > 0);  // the paper's prefill experts are compute bound
}

TEST_CASE("simulator: the paper config does not fit, is reported with what fits, and does not throw", "[sim]") {
  const moe::Config c = paper();
  moe::SimulateOptions o;
  o.hardware = moe::default_profile(c.cluster);
  nlohmann::ordered_json doc;
  REQUIRE_NOTHROW(doc = moe::simulate_config(c, o));
  CHECK(doc["context"]["mode"] == "simulated");
  REQUIRE(doc["strategies"].size() == c.strategies.size());
  for (const auto& s : doc["strategies"]) {
    CHECK_FALSE(s["memory"]["fits"].get<bool>());
    CHECK(s["memory"]["estimate_kv_cache_bytes"].get<double>() > 80e9);
    CHECK(s["feasibility"]["largest_batch_that_fits"].get<int64_t>() > 0);
    CHECK(s["feasibility"]["largest_batch_that_fits"].get<int64_t>() < 1024);
    CHECK(s["feasibility"]["largest_prompt_that_fits"].get<int64_t>() < 10000);
    CHECK(s["decode"]["tpot_ms"]["mean"].get<double>() > 0);
    CHECK(s["roofline"]["decode_step"]["attention"]["bound"] == "memory");  // the KV cache read
  }
  REQUIRE(doc.contains("feasible_variant"));
  const int64_t prompt = doc["feasible_variant"]["prompt_tokens"].get<int64_t>();
  moe::Config fit = c;
  fit.workload.prompt_tokens = static_cast<int>(prompt);
  for (const auto& s : fit.strategies) CHECK(moe::largest_batch_that_fits(fit, s, 2) >= fit.workload.batch_sequences);
  // A model that fits nowhere: zero, not a crash.
  moe::Config huge = c;
  huge.model.ffn_hidden = 1 << 24;
  CHECK(moe::largest_batch_that_fits(huge, huge.strategies[0], 2) == 0);
}

TEST_CASE("simulator: sweep output is well formed and notes what cannot be laid out", "[sim]") {
  const moe::Config c = paper();
  moe::SimulateOptions o;
  o.hardware = moe::default_profile(c.cluster);
  const nlohmann::ordered_json sweep = moe::simulate_sweep(c, {8, 16, 64, 1024}, o);
  REQUIRE(sweep.is_array());
  REQUIRE(sweep.size() == 4);
  CHECK(sweep[0]["sweep_point"]["nodes"] == 1);
  CHECK(sweep[1]["strategies"].size() == 3);
  CHECK(sweep[1]["strategies"][0]["layout"]["pp"] == 2);
  CHECK(sweep[1]["strategies"][2]["layout"]["ep"] == 8);   // the hybrid keeps its expert_tp groups of 2
  CHECK(sweep[1]["strategies"][2]["layout"]["expert_tp"] == 2);
  CHECK(sweep[2]["strategies"].size() == 2);  // 64 GPUs: pp = 8 does not divide 4 layers
  CHECK(sweep[2]["sweep_point"]["notes"].size() == 1);
  CHECK(sweep[3]["sweep_point"]["nodes"] == 128);
  for (const auto& p : sweep)
    for (const auto& s : p["strategies"]) {
      for (const char* key : {"prefill", "decode", "phases_ms", "traffic", "memory", "efficiency", "roofline"})
        CHECK(s.contains(key));
      CHECK(s["decode"]["tokens_per_s"].get<double>() > 0);
    }
  std::vector<std::string> notes;
  CHECK_THROWS_AS(moe::scale_config(c, 12, notes), moe::ConfigError);  // not a multiple of 8 GPUs per node
}

TEST_CASE("simulator: the shipped H100 profile parses, and overrides apply", "[sim]") {
  const moe::Config c = paper();
  const moe::HardwareProfile builtin = moe::default_profile(c.cluster);
  const moe::HardwareProfile file =
      moe::load_profile_file(std::string(MOE_SOURCE_DIR) + "/configs/hardware/h100-sxm-ndr.json", builtin);
  CHECK(file.peak_tflops == 989);
  CHECK(file.hbm_gb_s == 3350);
  CHECK(file.intra_node.achievable_gb_s() == Approx(369).epsilon(0.01));
  CHECK(file.nics_per_node == 8);
  // The built-in defaults are the file's efficiencies.
  CHECK(file.gemm_efficiency == builtin.gemm_efficiency);
  CHECK(file.attention_efficiency == builtin.attention_efficiency);
  CHECK(file.hbm_efficiency == builtin.hbm_efficiency);
  CHECK(file.alltoall_per_peer_us == builtin.alltoall_per_peer_us);
  moe::HardwareProfile p = file;
  moe::apply_profile_override(p, "gpu.gemm_efficiency=0.6");
  moe::apply_profile_override(p, "kernels.silu.gb_s=123");
  CHECK(p.gemm_efficiency == 0.6);
  CHECK(p.gb_s(moe::KernelKind::silu) == 123);
  CHECK_THROWS_AS(moe::apply_profile_override(p, "gpu.bogus=1"), moe::ConfigError);
  CHECK_THROWS_AS(moe::apply_profile_override(p, "gpu.gemm_efficiency=2"), moe::ConfigError);
  // Round trip through JSON.
  const moe::HardwareProfile back = moe::parse_profile(moe::profile_to_json(p), moe::HardwareProfile{}, "round trip");
  CHECK(moe::profile_to_json(back) == moe::profile_to_json(p));
}

TEST_CASE("simulator: 1024 GPUs with 256 experts per layer", "[sim]") {
  moe::Config c = paper();
  c.model.experts = 256;
  std::vector<std::string> notes;
  const moe::Config x = moe::scale_config(c, 1024, notes);
  REQUIRE(x.strategies.size() == 2);  // the baseline cannot split 4 layers into 128 stages
  CHECK(x.strategies[1].ep * x.strategies[1].expert_tp == 1024);
  REQUIRE(notes.size() == 1);
  moe::SimulateOptions o;
  o.hardware = moe::default_profile(x.cluster);
  const nlohmann::ordered_json doc = moe::simulate_config(x, o);
  const auto& s = doc["strategies"][0];
  CHECK(s["layout"]["ep"] == 1024);
  CHECK(s["decode"]["tokens_per_s"].get<double>() > 0);
  // Expert FLOPs of one iteration: every routed token's k assignments, whatever the placement.
  const double tokens = 1024.0 * (10000 + 32);
  const double expert = 4.0 * tokens * 2 * 8192 * 32768 * 4;
  const moe::CostModel m(x, x.strategies[0]);
  CHECK(m.iteration_totals().phases[static_cast<int>(moe::Phase::expert)].flops == Approx(expert));
}

TEST_CASE("simulator: a synthetic workload.routing is predicted per source and named in the results", "[sim]") {
  std::ifstream in(std::string(MOE_SOURCE_DIR) + "/configs/cpu-16rank-zipf.json");
  const nlohmann::json zipf = nlohmann::json::parse(in);
  nlohmann::json gate = zipf, nonlocal = zipf;
  gate["workload"]["routing"] = "gate";
  nonlocal["workload"]["routing"] = "zipf:1.2";
  moe::SimulateOptions o;
  o.backend = "cpu";
  o.feasible_variant = false;
  auto simulate = [&](const nlohmann::json& j) {
    const moe::Config c = moe::parse_config(j);
    o.hardware = moe::default_profile(c.cluster);
    return moe::simulate_config(c, o);
  };
  const auto z = simulate(zipf), g = simulate(gate), n = simulate(nonlocal);
  const auto& zr = z["strategies"][1];  // ep-round-robin
  CHECK(zr["routing"]["workload_routing"] == "zipf:1.2,local:0.5");
  CHECK(zr["routing"]["assumed"].get<std::string>().find("synthetic") != std::string::npos);
  CHECK(zr["load"]["routing"] == "synthetic zipf:1.2,local:0.5");
  CHECK(g["strategies"][1]["load"]["routing"] == "uniform");
  CHECK(z["strategies"][2]["routing"]["notes"].size() >= 2);  // balancing steers the run's choice
  // Skew concentrates rows on the hot experts' ranks: the busiest port carries more than under uniform routing.
  CHECK(zr["traffic"]["max_intra_node_link_bytes"].get<double>() > g["strategies"][1]["traffic"]["max_intra_node_link_bytes"].get<double>());
  // local:p sends half of the assignments to the node's home experts (e mod nodes), which the
  // topology-aware plan (strategies[2], planned for the same routing) keeps on the node.
  CHECK(z["strategies"][2]["traffic"]["inter_node_bytes"].get<double>() <
        n["strategies"][2]["traffic"]["inter_node_bytes"].get<double>());
  CHECK(zr["decode"]["tpot_ms"]["mean"].get<double>() > 0);
}

TEST_CASE("simulator: a trace workload is costed with its exact counts per source", "[sim]") {
  nlohmann::json j = nlohmann::json::parse(R"({
    "name": "trace",
    "model": {"layers": 1, "hidden": 8, "ffn_hidden": 16, "experts": 4, "top_k": 1, "heads": 2, "head_dim": 4},
    "workload": {"batch_sequences": 4, "prompt_tokens": 2, "decode_steps": 1, "routing": "trace:unused.json"},
    "cluster": {"nodes": 2, "gpus_per_node": 2},
    "strategies": [{"name": "ep", "kind": "ep", "ep": 4, "placement": "round_robin"}]
  })");
  const moe::Config c = moe::parse_config(j);
  auto t = std::make_shared<moe::RoutingTrace>();
  t->num_layers = 1;
  t->num_experts = 4;
  t->top_k = 1;
  t->source = "test";
  t->tokens_per_step = {8, 4};
  t->choices = {{{3, 3, 3, 3, 3, 3, 3, 3}}, {{0, 1, 2, 3}}};  // prefill: everything to expert 3; decode: each to its own
  moe::SimulateOptions o;
  o.backend = "cpu";
  o.feasible_variant = false;
  o.hardware = moe::default_profile(c.cluster);
  o.trace = t;
  const auto r = moe::simulate_strategy(c, c.strategies[0], o);
  CHECK(r["load"]["routing"] == "trace test");
  // Round robin with E = G puts expert e on rank e. Prefill: ranks 0 and 1 send their 4 rows to rank 3
  // across nodes, rank 2 its 2 rows within node 1 (both ways each); decode: every token stays home.
  const double row = 8 * 4;
  CHECK(r["traffic"]["inter_node_bytes"].get<double>() == Approx(4 * row * 2));
  CHECK(r["traffic"]["intra_node_bytes"].get<double>() == Approx(2 * row * 2));
  o.trace = nullptr;
  const auto u = moe::simulate_strategy(c, c.strategies[0], o);
  CHECK(u["load"]["routing"] == "uniform");
  CHECK(u["routing"]["notes"].size() == 1);
}

TEST_CASE("simulator: the shared-core bound counts each rank's own work under skewed routing", "[sim]") {
  moe::Config c = paper();
  c.workload.batch_sequences = 16;
  c.workload.prompt_tokens = 64;
  c.model.attention = false;
  const moe::StrategyConfig& ep = c.strategies[1];
  moe::CostOptions skew;
  skew.routing.expert_share.assign(c.model.layers, std::vector<double>(c.model.experts, 1.0));
  for (auto& layer : skew.routing.expert_share) layer[0] = 8;  // one hot expert
  const moe::CostModel uniform(c, ep), skewed(c, ep, skew);
  moe::HardwareProfile own = moe::default_profile(c.cluster), shared = own;
  shared.shared_cores = 2;
  const int expert = static_cast<int>(moe::Phase::expert);
  // On its own cores the hot expert's rank is the critical path: at least 1.5x the uniform expert phase.
  const moe::StepTiming u0 = moe::simulate_step(uniform.prefill(), own), s0 = moe::simulate_step(skewed.prefill(), own);
  CHECK(s0.phase_max_ms[expert] > 1.5 * u0.phase_max_ms[expert]);
  // On 2 shared cores the step is bound by all ranks' work, which the skew barely changes (expert FLOPs
  // are routing independent; the hot rank reads its weights once per extra block).
  const moe::StepTiming u = moe::simulate_step(uniform.prefill(), shared), s = moe::simulate_step(skewed.prefill(), shared);
  CHECK(s.busy_all_ranks_ms == Approx(u.busy_all_ranks_ms).epsilon(0.1));
  CHECK(s.time_ms == Approx(u.time_ms).epsilon(0.15));
}
