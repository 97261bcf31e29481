// Every overlap mode (ep: none, chunked, two_batch, with and without immediate routing; tp_pp:
// none, pipelined) reproduces the single-rank reference for prefill and every decode step, with
// capacity drops and balancing on, at 2, 4, 6 (replicas) and 16 ranks, including chunk counts that
// do not divide the tokens, more chunks than tokens, and empty micro-batches. The trace of a
// chunked run shows the dispatch of one chunk in flight while the experts of the previous one run.
#include <map>
#include <set>
#include <tuple>

#include <catch2/catch.hpp>

#include "mpi_test_util.hpp"
#include "sim/hardware.hpp"
#include "sim/simulate.hpp"

using moe::testing::run_json;
using moe::testing::small_config;
using moe::testing::world_rank;
using moe::testing::world_size;
using nlohmann::json;

namespace {

json ep(const std::string& name, int ranks, const std::string& overlap, int chunks, double capacity) {
  return {{"name", name}, {"kind", "ep"}, {"ep", ranks}, {"overlap", overlap}, {"chunks", chunks},
          {"load_balancing", moe::testing::balancing("paper", capacity)}};
}

// Every mode, including immediate routing off and more chunks than a decode step has tokens.
json every_ep_mode(int ranks, double capacity) {
  json s = json::array({ep("none", ranks, "none", 3, capacity), ep("chunked", ranks, "chunked", 2, capacity),
                        ep("chunked-many", ranks, "chunked", 50, capacity), ep("two_batch", ranks, "two_batch", 1, capacity)});
  json token_chunks = ep("chunked-tokens", ranks, "chunked", 2, capacity);
  token_chunks["immediate_routing"] = false;
  s.push_back(token_chunks);
  s.push_back(ep("chunked-3", ranks, "chunked", 3, capacity));
  return s;
}

void check_verified(const moe::testing::RunResults& out, size_t n) {
  CHECK(out.all_verified);
  if (world_rank() != 0) return;
  REQUIRE(out.strategies.size() == n);
  for (const auto& s : out.strategies) {
    INFO("strategy " << s["name"].get<std::string>());
    CHECK(s["verification"]["passed"].get<bool>());
    CHECK(s["verification"]["max_rel_error"].get<double>() <= 1e-4);
    CHECK(s["verification"]["routing_matches_reference"].get<bool>());
    CHECK(s["overlap"]["mode"] == s["layout"]["overlap"]);
    for (const char* step : {"prefill", "decode_step"}) {
      const auto& o = s["overlap"][step];
      CHECK(o["comm_ms"].get<double>() >= 0);
      CHECK(o["exposed_comm_ms"].get<double>() <= o["comm_ms"].get<double>() + 1e-9);
      CHECK(o["efficiency"].get<double>() >= 0);
      CHECK(o["efficiency"].get<double>() <= 1);
    }
  }
}

}  // namespace

TEST_CASE("overlap, 2 ranks: every ep mode and pipelined tp_pp match the reference with capacity drops", "[np2]") {
  REQUIRE(world_size() == 2);
  json strategies = every_ep_mode(2, 1.0);
  strategies.push_back({{"name", "pp2-pipelined"}, {"kind", "tp_pp"}, {"tp", 1}, {"pp", 2}, {"microbatches", 4},
                        {"overlap", "pipelined"}, {"load_balancing", moe::testing::balancing("paper", 1.0)}});
  json cfg = small_config(1, 2, 8, 2, 4, strategies);
  cfg["model"]["layers"] = 4;
  const moe::testing::RunResults out = run_json(cfg);
  check_verified(out, strategies.size());
  if (world_rank() == 0) {
    const auto& s = out.strategies;
    CHECK(s[0]["layout"]["prefill_parts"] == 3);
    CHECK(s[1]["layout"]["immediate_routing"] == true);        // 2 sequences per rank in 2 chunks
    CHECK(s[5]["layout"]["immediate_routing"] == false);       // 3 chunks of 2 sequences: token chunks
    CHECK(s[2]["layout"]["decode_parts"] == 2);                // 50 chunks of a 2-token decode step
    CHECK(s[3]["layout"]["prefill_parts"] == 2);
    CHECK(s[4]["layout"]["immediate_routing"] == false);
    for (const auto& st : s) CHECK(st["load"]["dropped_total"].get<int64_t>() > 0);
  }
}

TEST_CASE("overlap, 2 ranks: one sequence per rank leaves a two_batch micro-batch empty", "[np2]") {
  REQUIRE(world_size() == 2);
  json strategies = json::array({ep("two_batch", 2, "two_batch", 1, 0), ep("chunked", 2, "chunked", 4, 0)});
  const moe::testing::RunResults out = run_json(small_config(1, 2, 4, 2, 2, strategies));
  check_verified(out, 2);
}

TEST_CASE("overlap, 4 ranks: every mode, attention on and off", "[np4]") {
  REQUIRE(world_size() == 4);
  json strategies = every_ep_mode(4, 1.0);
  strategies.push_back({{"name", "tp2pp2-pipelined"}, {"kind", "tp_pp"}, {"tp", 2}, {"pp", 2}, {"microbatches", 2},
                        {"overlap", "pipelined"}, {"load_balancing", moe::testing::balancing("paper", 1.0)}});
  strategies.push_back({{"name", "pp4-pipelined"}, {"kind", "tp_pp"}, {"tp", 1}, {"pp", 4}, {"microbatches", 4},
                        {"overlap", "pipelined"}});
  json cfg = small_config(1, 4, 16, 4, 8, strategies);
  cfg["model"]["layers"] = 4;
  SECTION("attention on") { check_verified(run_json(cfg), strategies.size()); }
  SECTION("attention off") {
    cfg["model"]["attention"] = false;
    check_verified(run_json(cfg), strategies.size());
  }
}

TEST_CASE("overlap, 6 ranks, 3 experts: replicas in every mode", "[np6]") {
  REQUIRE(world_size() == 6);
  json strategies = every_ep_mode(6, 1.0);
  json topo = ep("two_batch-topo", 6, "two_batch", 1, 0);
  topo["placement"] = "topology_aware";
  topo["placement_profile"] = "hot:0.5,local:0.7";
  strategies.push_back(topo);
  check_verified(run_json(small_config(2, 3, 3, 3, 12, strategies)), strategies.size());
}

TEST_CASE("overlap, 16 ranks: the shipped config in every mode", "[np16]") {
  REQUIRE(world_size() == 16);
  json cfg = moe::testing::load_json("configs/cpu-16rank.json");
  cfg["workload"]["decode_steps"] = 2;
  cfg["run"]["iterations"] = 1;
  json strategies = json::array({ep("chunked", 16, "chunked", 2, 1.0), ep("two_batch", 16, "two_batch", 1, 1.0)});
  json base = cfg["strategies"][0];
  base["name"] = "baseline-pipelined";
  base["overlap"] = "pipelined";
  strategies.push_back(base);
  cfg["strategies"] = strategies;
  check_verified(run_json(cfg), 3);
}

TEST_CASE("overlap, 2 ranks: the trace has a process per rank, a thread per stream, and chunks in flight", "[np2]") {
  REQUIRE(world_size() == 2);
  json strategies = json::array({ep("chunked", 2, "chunked", 4, 0)});
  json cfg = small_config(1, 2, 4, 2, 8, strategies);
  cfg["model"]["hidden"] = 256;
  cfg["model"]["ffn_hidden"] = 512;
  cfg["model"]["layers"] = 3;
  cfg["workload"]["prompt_tokens"] = 32;
  moe::Config c = moe::parse_config(cfg);
  moe::validate_for_run(c, world_size(), 4, "cpu");
  moe::Backends b = moe::make_backends("cpu", c.model.dtype);
  moe::RunOptions o;
  o.routing = moe::RoutingSource::from_config(c);
  o.trace = true;
  const moe::testing::RunResults out = moe::testing::run_and_report(c, o, b);
  CHECK(out.all_verified);
  if (world_rank() != 0) return;
  const auto& events = out.trace["traceEvents"];
  REQUIRE(events.is_array());
  std::map<int, std::string> process;
  struct Span { double b, e; };
  // [rank][layer][part] spans of the prefill step (step 0).
  std::map<std::tuple<int, int, int>, std::vector<Span>> dispatch, experts;
  std::set<std::pair<int, int>> threads;
  for (const auto& e : events) {
    REQUIRE(e.contains("ph"));
    if (e["ph"] == "M") {
      if (e["name"] == "process_name") process[e["pid"].get<int>()] = e["args"]["name"].get<std::string>();
      if (e["name"] == "thread_name") threads.insert({e["pid"].get<int>(), e["tid"].get<int>()});
      continue;
    }
    REQUIRE(e["ph"] == "X");
    CHECK(e["dur"].get<double>() >= 0);
    CHECK(e["ts"].get<double>() >= 0);
    CHECK(threads.count({e["pid"].get<int>(), e["tid"].get<int>()}) == 1);
    for (const char* k : {"layer", "part", "step", "bytes", "strategy"}) CHECK(e["args"].contains(k));
    if (e["args"]["step"] != 0) continue;
    const auto key = std::make_tuple(e["pid"].get<int>(), e["args"]["layer"].get<int>(), e["args"]["part"].get<int>());
    const Span s{e["ts"].get<double>(), e["ts"].get<double>() + e["dur"].get<double>()};
    if (e["name"] == "dispatch") {
      CHECK(e["tid"] == 1);   // the send stream
      CHECK(e["args"]["bytes"].get<int64_t>() > 0);
      dispatch[key].push_back(s);
    }
    if (e["name"] == "experts") experts[key].push_back(s);
  }
  CHECK(process == std::map<int, std::string>{{0, "rank 0 (node 0)"}, {1, "rank 1 (node 0)"}});
  // 3 layers x 4 chunks of dispatch on each rank in the prefill.
  CHECK(dispatch.size() == 2 * 3 * 4);
  double overlapped = 0;
  for (const auto& [key, spans] : experts) {
    const auto [rank, layer, part] = key;
    const auto next = dispatch.find({rank, layer, part + 1});
    if (next == dispatch.end()) continue;
    for (const Span& x : spans)
      for (const Span& d : next->second) overlapped += std::max(0.0, std::min(x.e, d.e) - std::max(x.b, d.b));
  }
  INFO("microseconds of experts(c) under dispatch(c+1), summed over ranks and layers");
  CHECK(overlapped > 0);
}

namespace {

// The schedule each strategy ran (layout.schedule of the run) is the one simulate replays.
void check_run_and_simulate_agree(const json& cfg) {
  const moe::testing::RunResults out = run_json(cfg);
  CHECK(out.all_verified);
  if (world_rank() != 0) return;
  const moe::Config c = moe::parse_config(cfg);
  moe::SimulateOptions o;
  o.hardware = moe::default_profile(c.cluster);
  o.feasible_variant = false;
  const auto sim = moe::simulate_config(c, o);
  REQUIRE(out.strategies.size() == sim["strategies"].size());
  for (size_t i = 0; i < out.strategies.size(); ++i) {
    INFO(out.strategies[i]["name"].get<std::string>());
    CHECK(out.strategies[i]["layout"]["schedule"].dump() == sim["strategies"][i]["layout"]["schedule"].dump());
    CHECK(out.strategies[i]["overlap"]["mode"] == sim["strategies"][i]["overlap"]["mode"]);
  }
}

}  // namespace

TEST_CASE("overlap, 2 ranks: run and simulate see the same stages for the shipped overlap config", "[np2]") {
  REQUIRE(world_size() == 2);
  json cfg = moe::testing::load_json("configs/cpu-2rank-overlap.json");
  cfg["model"]["hidden"] = 128;   // the same schedule at a test's size
  cfg["workload"]["prompt_tokens"] = 16;
  cfg["workload"]["decode_steps"] = 2;
  cfg["run"]["iterations"] = 1;
  check_run_and_simulate_agree(cfg);
}

TEST_CASE("overlap, 4 ranks: run and simulate see the same stages for the shipped 4-rank config", "[np4]") {
  REQUIRE(world_size() == 4);
  json cfg = moe::testing::load_json("configs/cpu-4rank.json");
  cfg["run"]["iterations"] = 1;
  check_run_and_simulate_agree(cfg);
}

TEST_CASE("overlap, 16 ranks: run and simulate see the same stages for the shipped 16-rank configs", "[np16]") {
  REQUIRE(world_size() == 16);
  for (const char* name : {"configs/cpu-16rank.json", "configs/cpu-16rank-zipf.json", "configs/cpu-16rank-hot.json"}) {
    INFO(name);
    json cfg = moe::testing::load_json(name);
    cfg["workload"]["decode_steps"] = 2;
    cfg["run"]["iterations"] = 1;
    check_run_and_simulate_agree(cfg);
  }
}
