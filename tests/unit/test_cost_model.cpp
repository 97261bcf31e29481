// Tests for src/cost/cost_model.*: FLOPs and link bytes of both strategies against values computed by
// hand on a tiny config, routing-independent totals under skewed routing, replicas (E < G), the
// link summary against summarize_traffic, the paper's shapes, and per-source routing (the replica
// deal of split_over_replicas, per-step routing).
#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <tuple>
#include <random>

#include "core/config.hpp"
#include "core/error.hpp"
#include "cost/cost_model.hpp"
#include "placement/plan_metrics.hpp"
#include "placement/strategy_plan.hpp"

namespace {

// L=2, d=4, f=8, E=4, k=2, H=2, D=2 (HD=4); batch 4, prompt 3, decode 2; 1 node x 4 gpus.
moe::Config tiny(int nodes = 1, int gpus = 4) {
  nlohmann::json j = nlohmann::json::parse(R"({
    "name": "tiny",
    "model": {"layers": 2, "hidden": 4, "ffn_hidden": 8, "experts": 4, "heads": 2, "head_dim": 2},
    "workload": {"batch_sequences": 4, "prompt_tokens": 3, "decode_steps": 2},
    "cluster": {"nodes": 1, "gpus_per_node": 4},
    "strategies": [
      {"name": "baseline", "kind": "tp_pp", "tp": 2, "pp": 2, "microbatches": 2},
      {"name": "proposed", "kind": "ep", "ep": 4}
    ]
  })");
  j["cluster"]["nodes"] = nodes;
  j["cluster"]["gpus_per_node"] = gpus;
  return moe::parse_config(j);
}

moe::CostOptions fp32() {
  moe::CostOptions o;
  o.elem_bytes = 4;
  return o;
}

double phase_flops(const moe::CostTotals& t, moe::Phase p) { return t.phases[static_cast<int>(p)].flops; }

// [L][G][E] of one value per local token.
std::shared_ptr<const moe::SourceAssignments> constant_sources(int L, int G, int E, double v) {
  return std::make_shared<moe::SourceAssignments>(L, std::vector<std::vector<double>>(G, std::vector<double>(E, v)));
}

}  // namespace

TEST_CASE("cost model: prefill and decode FLOPs by hand (tiny config)", "[cost]") {
  const moe::Config c = tiny();
  const moe::CostModel tp_pp(c, c.strategies[0], fp32());
  const moe::CostModel ep(c, c.strategies[1], fp32());
  // Prefill, T = 12 tokens, ctx 3, per layer:
  //   attention = 3*2*12*4*4 (QKV) + 2*12*4*4 (Wo) + 4 seqs*2 heads*4*3*3*2 (core) = 1152 + 384 + 576 = 2112
  //   gate      = 2*12*4*4 = 384 (tp_pp: replicated on tp = 2 ranks -> 768)
  //   expert    = 4*A*d*f = 4*24*4*8 = 3072 (dropless: routing independent)
  const moe::CostTotals ep_pre = ep.totals(ep.prefill()), tp_pre = tp_pp.totals(tp_pp.prefill());
  CHECK(phase_flops(ep_pre, moe::Phase::attention) == Approx(2 * 2112));
  CHECK(phase_flops(ep_pre, moe::Phase::gate) == Approx(2 * 384));
  CHECK(phase_flops(ep_pre, moe::Phase::expert) == Approx(2 * 3072));
  CHECK(ep_pre.flops() == Approx(11136));
  CHECK(phase_flops(tp_pre, moe::Phase::attention) == Approx(2 * 2112));
  CHECK(phase_flops(tp_pre, moe::Phase::gate) == Approx(2 * 768));
  CHECK(phase_flops(tp_pre, moe::Phase::expert) == Approx(2 * 3072));
  CHECK(tp_pre.flops() == Approx(11904));
  // Decode step 0: 4 tokens, ctx 4: attention 384 + 128 + 4*2*4*1*4*2 = 768; gate 128 (x2 tp_pp); expert 1024.
  CHECK(ep.totals(ep.decode(0)).flops() == Approx(2 * (768 + 128 + 1024)));
  CHECK(tp_pp.totals(tp_pp.decode(0)).flops() == Approx(2 * (768 + 256 + 1024)));
  // Decode step 1 sees one more cached position: only the attention core grows (+ 4*2*4*1*1*2 per layer).
  CHECK(ep.totals(ep.decode(1)).flops() - ep.totals(ep.decode(0)).flops() == Approx(2 * 64));
  // The iteration is the prefill and every decode step.
  CHECK(ep.iteration_totals().flops() ==
        Approx(ep_pre.flops() + ep.totals(ep.decode(0)).flops() + ep.totals(ep.decode(1)).flops()));
}

TEST_CASE("cost model: tp_pp link bytes by hand equal what MpiComm counts", "[cost]") {
  const moe::Config c = tiny();
  const moe::CostModel m(c, c.strategies[0], fp32());
  // Prefill: micro-batch rows 2*3 = 6, buffer 6*4*4 = 96 B; ring all-reduce counts 2*96*(2-1)/2 = 96 B
  // per rank, 2 per layer (attention on), 4 ranks, 2 micro-batches: 1536 B. pp hops: 2 tp ranks send
  // 96 B per micro-batch: 384 B. Feedback: 2 ranks send 4*4*4 = 64 B: 128 B. One node: all intra.
  const moe::CostTotals pre = m.totals(m.prefill());
  CHECK(pre.links.intra_bytes == Approx(1536 + 384 + 128));
  CHECK(pre.links.inter_bytes == 0);
  // Decode: rows 2, buffer 32 B: all-reduce 2*2*4*32 = 512, hops 2*2*32 = 128, feedback 128.
  const moe::CostTotals dec = m.totals(m.decode(0));
  CHECK(dec.links.intra_bytes == Approx(512 + 128 + 128));
  // Busiest port (sent): a stage-0 rank sends its all-reduce shares and its pp hops;
  // 2*2*96 + 2*96 = 576 in prefill; a last-stage rank 2*2*96 + 64 = 448.
  CHECK(pre.links.max_port_sent() == Approx(576));
}

TEST_CASE("cost model: tp_pp across nodes uses the rail-aligned NICs", "[cost]") {
  // 2 nodes x 2 gpus, tp 2 x pp 2: the tp groups are intra-node, pp hops cross nodes on NIC gpu % nics.
  moe::Config c = tiny(2, 2);
  const moe::CostModel m(c, c.strategies[0], fp32());
  const moe::CostTotals pre = m.totals(m.prefill());
  CHECK(pre.links.intra_bytes == Approx(1536));
  CHECK(pre.links.inter_bytes == Approx(384 + 128));
  // NIC (node 0, gpu 0) sends two 96 B hops; NIC (node 1, gpu 0) the 64 B feedback.
  CHECK(pre.links.max_nic_sent() == Approx(192));
  // With one NIC per node both ranks of node 0 share it.
  c.cluster.inter_node.nics_per_node = 1;
  const moe::CostModel one(c, c.strategies[0], fp32());
  CHECK(one.totals(one.prefill()).links.max_nic_sent() == Approx(384));
}

TEST_CASE("cost model: EP dispatch and combine bytes under uniform routing", "[cost]") {
  const moe::Config c = tiny();
  const moe::CostModel m(c, c.strategies[1], fp32());
  // E = G = 4: a token's k = 2 assignments go to another rank with probability 3/4. Prefill: 3 local
  // rows per rank -> 3*2*3/4 = 4.5 rows of 16 B out per rank, 4 ranks, dispatch + combine, 2 layers.
  const moe::CostTotals pre = m.totals(m.prefill());
  CHECK(pre.links.intra_bytes == Approx(4.5 * 16 * 4 * 2 * 2));
  CHECK(pre.links.max_port_sent() == Approx(4.5 * 16 * 2 * 2));
  const moe::StepCost s = m.prefill();
  REQUIRE(s.ep_layers.size() == 2);
  REQUIRE(s.ep_layers[0].chunks->size() == 1);
  CHECK((*s.ep_layers[0].chunks)[0].dispatch.comm.kind == moe::CommKind::all_to_all);
  CHECK((*s.ep_layers[0].chunks)[0].dispatch.comm.peers == 3);
}

TEST_CASE("cost model: ep 2 x expert_tp 2 splits the expert FLOPs and sends every assignment to both members", "[cost]") {
  moe::Config c = tiny();
  moe::StrategyConfig etp = c.strategies[1];
  etp.ep = 2;
  etp.expert_tp = 2;
  const moe::CostModel whole(c, c.strategies[1], fp32()), shards(c, etp, fp32());
  const moe::CostTotals w = whole.totals(whole.prefill()), s = shards.totals(shards.prefill());
  // The same assignments through half-width shards: the same expert FLOPs (4*A*d*f = 3072 per layer).
  CHECK(phase_flops(s, moe::Phase::expert) == Approx(2 * 3072));
  CHECK(phase_flops(s, moe::Phase::expert) == Approx(phase_flops(w, moe::Phase::expert)));
  // Per local token 2 assignments x 2 members = 4 rows, 3 of them to other ranks (one member of the
  // own group's experts is the rank itself): 12 tokens * 3 rows * 16 bytes per direction and layer,
  // twice ep 4's 1.5 rows.
  CHECK(s.links.intra_bytes == Approx(2 * 2 * 12 * 3 * 16));
  CHECK(s.links.intra_bytes == Approx(2 * w.links.intra_bytes));
  const moe::StepCost pre = shards.prefill();
  CHECK((*pre.ep_layers[0].chunks)[0].expert.kernels[0].n == 4);   // W1 shard: f / expert_tp columns
  REQUIRE(shards.placement() != nullptr);
  CHECK(shards.placement()->layers[0].num_experts == 8);           // E x expert_tp shards
}

TEST_CASE("cost model: expert FLOPs are routing independent, the busiest rank is not", "[cost]") {
  moe::Config c = tiny();
  c.strategies[1].chunks = 2;
  moe::CostOptions skew = fp32();
  skew.routing.expert_share = {{0.7, 0.1, 0.1, 0.1}, {0.25, 0.25, 0.25, 0.25}};
  const moe::CostModel uniform(c, c.strategies[1], fp32()), skewed(c, c.strategies[1], skew);
  const auto u = uniform.totals(uniform.prefill()), s = skewed.totals(skewed.prefill());
  CHECK(phase_flops(s, moe::Phase::expert) == Approx(phase_flops(u, moe::Phase::expert)));
  CHECK(s.flops() == Approx(u.flops()));
  // Layer 0's hot expert makes rank 0 the busiest: it computes 0.7/0.25 of the uniform rows.
  const double hot = (*skewed.prefill().ep_layers[0].chunks)[0].expert.flops();
  const double even = (*uniform.prefill().ep_layers[0].chunks)[0].expert.flops();
  CHECK(hot == Approx(even * 0.7 / 0.25));
  // tp_pp is routing independent for the totals as well.
  const moe::CostModel tu(c, c.strategies[0], fp32()), ts(c, c.strategies[0], skew);
  CHECK(ts.totals(ts.prefill()).flops() == Approx(tu.totals(tu.prefill()).flops()));
}

TEST_CASE("cost model: replicas (3 experts on 6 ranks) keep totals and prefer local replicas", "[cost]") {
  nlohmann::json j = nlohmann::json::parse(R"({
    "name": "replicas",
    "model": {"layers": 1, "hidden": 8, "ffn_hidden": 16, "experts": 3, "top_k": 2, "heads": 2, "head_dim": 4},
    "workload": {"batch_sequences": 6, "prompt_tokens": 2, "decode_steps": 1},
    "cluster": {"nodes": 2, "gpus_per_node": 3},
    "strategies": [{"name": "ep", "kind": "ep", "ep": 6}]
  })");
  const moe::Config c = moe::parse_config(j);
  const moe::CostModel m(c, c.strategies[0], fp32());
  const moe::CostTotals t = m.totals(m.prefill());
  // Every rank hosts one replica; each node holds all 3 experts, so nothing crosses nodes.
  CHECK(t.links.inter_bytes == 0);
  CHECK(phase_flops(t, moe::Phase::expert) == Approx(4.0 * 12 * 2 * 8 * 16));
  // Own replica serves 1/3 of a rank's assignments, the two others of its node the rest.
  CHECK(t.links.intra_bytes == Approx(6 * 2 * 2 * (2.0 / 3) * 8 * 4 * 2));
}

TEST_CASE("cost model: capacity drops reduce expert work and traffic", "[cost]") {
  moe::Config c = tiny();
  c.strategies[1].load_balancing.capacity_factor = 0.5;  // half the expected assignments fit
  const moe::CostModel capped(c, c.strategies[1], fp32());
  c.strategies[1].load_balancing.capacity_factor = 0;
  const moe::CostModel free(c, c.strategies[1], fp32());
  const auto a = capped.totals(capped.prefill()), b = free.totals(free.prefill());
  CHECK(phase_flops(a, moe::Phase::expert) == Approx(phase_flops(b, moe::Phase::expert) * 0.5));
  CHECK(a.links.intra_bytes == Approx(b.links.intra_bytes * 0.5));
}

TEST_CASE("cost model: link loads match summarize_traffic on a random matrix", "[cost]") {
  const moe::Topology topo(3, 4);
  std::mt19937 rng(7);
  std::vector<std::vector<int64_t>> bytes(12, std::vector<int64_t>(12));
  moe::LinkLoads loads(topo, 2);
  for (int s = 0; s < 12; ++s)
    for (int d = 0; d < 12; ++d) {
      bytes[s][d] = rng() % 1000;
      loads.add(topo, 2, s, d, double(bytes[s][d]));
    }
  const moe::TrafficSummary sum = moe::summarize_traffic(topo, 2, bytes);
  CHECK(loads.intra_bytes == Approx(sum.intra_node_bytes));
  CHECK(loads.inter_bytes == Approx(sum.inter_node_bytes));
  CHECK(loads.max_port_sent() == Approx(sum.max_intra_link_bytes));
  CHECK(loads.max_nic_sent() == Approx(sum.max_inter_link_bytes));
}

TEST_CASE("cost model: paper shapes (fp16) and the attention-off variant", "[cost]") {
  std::ifstream in(std::string(MOE_SOURCE_DIR) + "/configs/paper-16xh100.json");
  moe::Config c = moe::parse_config(nlohmann::json::parse(in));
  const moe::CostModel ep(c, c.strategies[1]);
  const moe::StepCost d = ep.decode(0);
  // A decode step routes 1024 tokens: per layer expert FLOPs 4 * 2048 * 8192 * 32768.
  const double expert = 4.0 * 2048 * 8192 * 32768 * c.model.layers;
  CHECK(phase_flops(ep.totals(d), moe::Phase::expert) == Approx(expert));
  c.model.attention = false;
  const moe::CostModel ep2(c, c.strategies[1]);
  CHECK(phase_flops(ep2.totals(ep2.decode(0)), moe::Phase::attention) == 0);
  CHECK(ep2.decode(0).ep_layers[0].attention.kernels.empty());
}

TEST_CASE("cost model: per-source assignments equal to uniform reproduce the uniform cost", "[cost]") {
  moe::Config c = tiny(2, 2);
  c.strategies[1].chunks = 2;
  moe::CostOptions per_source = fp32();
  per_source.routing.source_assignments = constant_sources(2, 4, 4, 2.0 / 4);  // k / E per local token
  const moe::CostModel u(c, c.strategies[1], fp32()), p(c, c.strategies[1], per_source);
  for (int step = -1; step < c.workload.decode_steps; ++step) {
    const auto a = u.totals(step < 0 ? u.prefill() : u.decode(step));
    const auto b = p.totals(step < 0 ? p.prefill() : p.decode(step));
    CHECK(b.flops() == Approx(a.flops()));
    CHECK(b.hbm_bytes() == Approx(a.hbm_bytes()));
    CHECK(b.links.intra_bytes == Approx(a.links.intra_bytes));
    CHECK(b.links.inter_bytes == Approx(a.links.inter_bytes));
    CHECK(b.links.max_port_sent() == Approx(a.links.max_port_sent()));
    CHECK(b.links.max_nic_sent() == Approx(a.links.max_nic_sent()));
  }
}

TEST_CASE("cost model: per-source counts split over replicas as split_over_replicas deals them", "[cost]") {
  nlohmann::json j = nlohmann::json::parse(R"({
    "name": "replicas",
    "model": {"layers": 1, "hidden": 8, "ffn_hidden": 16, "experts": 3, "top_k": 2, "heads": 2, "head_dim": 4},
    "workload": {"batch_sequences": 6, "prompt_tokens": 5, "decode_steps": 1},
    "cluster": {"nodes": 2, "gpus_per_node": 3, "inter_node": {"nics_per_node": 1}},
    "strategies": [{"name": "ep", "kind": "ep", "ep": 6, "chunks": 2}]
  })");
  const moe::Config c = moe::parse_config(j);
  const moe::Topology topo = moe::Topology::from_config(c.cluster);
  // A skewed integer routing: source g sends counts[g][e] of its 5 prefill rows' 10 assignments.
  const std::vector<std::vector<double>> counts = {{7, 3, 0}, {1, 1, 8}, {0, 5, 5}, {10, 0, 0}, {2, 2, 6}, {4, 3, 3}};
  auto a = std::make_shared<moe::SourceAssignments>(1, counts);
  for (auto& row : (*a)[0])
    for (double& x : row) x /= 5;  // per local token
  moe::CostOptions o = fp32();
  o.routing.source_assignments = a;
  // A placement whose replicas cross nodes: expert 0 on ranks 0 and 4, expert 1 on 1 and 2, expert 2 on 3 and 5.
  moe::Placement p;
  p.algorithm = "test";
  moe::LayerPlacement lp;
  lp.num_experts = 3;
  lp.num_ranks = 6;
  lp.slots = {{0}, {1}, {1}, {2}, {0}, {2}};
  lp.replicas = {{0, 4}, {1, 2}, {3, 5}};
  p.layers = {lp};
  o.placement = std::make_shared<const moe::Placement>(p);
  const moe::CostModel m(c, c.strategies[0], o);
  const moe::CostTotals t = m.totals(m.prefill());
  const moe::PlanMetrics want = moe::compute_plan_metrics(lp, topo, 1, 8 * 4, counts);
  CHECK(t.links.intra_bytes == Approx(want.intra_node_bytes));
  CHECK(t.links.inter_bytes == Approx(want.inter_node_bytes));
  // Dispatch + combine, each sent by its sender: port_bytes of the plan metrics are the same sums.
  for (int r = 0; r < 6; ++r) CHECK(t.links.port_sent[r] == Approx(want.port_bytes[r]).margin(1e-9));
  for (size_t i = 0; i < want.nic_bytes.size(); ++i) CHECK(t.links.nic_sent[i] == Approx(want.nic_bytes[i]).margin(1e-9));
  // Expert FLOPs follow the kept assignments: 60 rows through W1 and W2.
  CHECK(phase_flops(t, moe::Phase::expert) == Approx(4.0 * 60 * 8 * 16));
}

TEST_CASE("cost model: per-step source assignments pick each step's routing", "[cost]") {
  const moe::Config c = tiny(2, 2);
  // Step 0 (prefill): every source keeps its tokens on its own rank's expert; decode steps: all to expert 3.
  auto local = constant_sources(2, 4, 4, 0.0), remote = constant_sources(2, 4, 4, 0.0);
  auto l0 = std::const_pointer_cast<moe::SourceAssignments>(local), r0 = std::const_pointer_cast<moe::SourceAssignments>(remote);
  const moe::Placement plan = moe::plan_for_strategy(c, c.strategies[1], moe::Topology::from_config(c.cluster));
  for (int l = 0; l < 2; ++l)
    for (int g = 0; g < 4; ++g) {
      (*l0)[l][g][plan.layers[l].slots[g].at(0)] = 2;
      (*r0)[l][g][3] = 2;
    }
  moe::CostOptions o = fp32();
  o.routing.step_source_assignments = {local, remote, remote};
  const moe::CostModel m(c, c.strategies[1], o);
  CHECK(m.totals(m.prefill()).links.intra_bytes + m.totals(m.prefill()).links.inter_bytes == 0);
  const moe::CostTotals d = m.totals(m.decode(1));
  CHECK(d.links.intra_bytes + d.links.inter_bytes == Approx(3 * 2 * 2 * 2 * 16.0));  // 3 remote sources, 1 row, k 2, 2 layers, both ways
  moe::CostOptions short_steps = fp32();
  short_steps.routing.step_source_assignments = {local};
  const moe::CostModel s(c, c.strategies[1], short_steps);
  CHECK_THROWS_AS(s.decode(0), moe::Error);
}

TEST_CASE("cost model: every stage is costed and the stages run each op of the step as often as it counts", "[cost]") {
  moe::Config c = tiny();
  c.workload.batch_sequences = 8;
  c.strategies[1].chunks = 2;
  for (const std::string overlap : {"none", "chunked", "two_batch"}) {
    c.strategies[1].overlap = overlap;
    c.strategies[1].immediate_routing = overlap == "chunked";
    for (const moe::StrategyConfig& spec : c.strategies) {
      const moe::CostModel m(c, spec, fp32());
      for (const moe::StepCost& s : {m.prefill(), m.decode(1)}) {
        INFO(spec.name << " overlap " << overlap << " new_len " << s.new_len);
        REQUIRE(s.stage_costs.size() == s.schedule.stages.size());
        // Shares of every op's kernels and communication the stages run, by (slot, layer, part).
        std::map<std::tuple<int, int, int>, std::pair<double, double>> used;
        for (size_t i = 0; i < s.stage_costs.size(); ++i) {
          const moe::StageCost& sc = s.stage_costs[i];
          REQUIRE(sc.count >= 1);
          CHECK(sc.communication == moe::is_communication(s.schedule.stages[i].kind));
          for (const moe::OpUse& u : sc) {
            auto& [kernels, comm] = used[{static_cast<int>(u.op.slot), u.op.layer, u.op.part}];
            if (u.part != moe::OpPart::comm) kernels += u.share;
            if (u.part != moe::OpPart::kernels) comm += u.share;
          }
        }
        // tp_pp: the schedule is one pipeline stage's, whose micro-batches each run the op once.
        for (const moe::OpCount& o : s.ops) {
          const moe::Op& op = s.op(o.op);
          const auto u = used[{static_cast<int>(o.op.slot), o.op.layer, o.op.part}];
          if (!op.kernels.empty()) CHECK(u.first == Approx(o.times));
          if (op.comm.kind != moe::CommKind::none) CHECK(u.second == Approx(o.times));
        }
        for (const moe::OpCount& o : s.outside_ops)
          CHECK(used.count({static_cast<int>(o.op.slot), o.op.layer, o.op.part}) == 0);
      }
    }
  }
}
