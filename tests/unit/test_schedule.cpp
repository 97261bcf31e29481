// The step schedules (schedule/schedule.hpp): stage lists of every overlap mode, parts that do not
// divide the tokens or outnumber them, immediate routing only with whole sequences, posted
// pipeline transfers; the interval arithmetic behind the overlap metric; routings appended part by
// part; and, for every shipped config, the schedule simulate reports is the one the strategies run.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <set>

#include "core/config.hpp"
#include "routing/router.hpp"
#include "schedule/phase.hpp"
#include "schedule/schedule.hpp"
#include "sim/hardware.hpp"
#include "sim/simulate.hpp"

using moe::OverlapMode;
using moe::Schedule;
using moe::StageKind;

namespace {

moe::StrategyConfig ep_spec(const std::string& overlap, int chunks, bool immediate = true) {
  moe::StrategyConfig s;
  s.kind = "ep";
  s.overlap = overlap;
  s.chunks = chunks;
  s.immediate_routing = immediate;
  return s;
}

int count(const Schedule& s, StageKind k) {
  int n = 0;
  for (const auto& st : s.stages) n += st.kind == k;
  return n;
}

// Stage indices of kind k, in issue order.
std::vector<int> where(const Schedule& s, StageKind k, int layer = 0) {
  std::vector<int> out;
  for (size_t i = 0; i < s.stages.size(); ++i)
    if (s.stages[i].kind == k && s.stages[i].layer == layer) out.push_back(static_cast<int>(i));
  return out;
}

// Every dependency points backwards and every part's rows tile the rank's rows.
void check_well_formed(const Schedule& s, int64_t rows) {
  for (size_t i = 0; i < s.stages.size(); ++i)
    for (int a : s.stages[i].after) CHECK((a >= 0 && a < static_cast<int>(i)));
  int64_t next = 0;
  for (const auto& p : s.parts) {
    CHECK(p.row0 == next);
    CHECK(p.rows >= 0);
    next += p.rows;
  }
  CHECK(next == rows);
}

}  // namespace

TEST_CASE("schedule: overlap none keeps program order, one count exchange per layer", "[schedule]") {
  const Schedule s = moe::build_ep_schedule(ep_spec("none", 3), 2, true, 4, 5);
  check_well_formed(s, 20);
  CHECK(s.mode == OverlapMode::none);
  CHECK(s.parts.size() == 3);
  CHECK(s.parts[0].rows + s.parts[1].rows + s.parts[2].rows == 20);
  CHECK(count(s, StageKind::counts) == 2);
  CHECK(count(s, StageKind::attention) == 2);   // once per layer
  CHECK(count(s, StageKind::dispatch) == 6);
  // pack, dispatch, experts, combine, unpack of a chunk before the next chunk's pack.
  const auto pack = where(s, StageKind::pack), unpack = where(s, StageKind::unpack);
  for (size_t c = 1; c < pack.size(); ++c) CHECK(unpack[c - 1] < pack[c]);
}

TEST_CASE("schedule: chunked posts dispatch of chunk c+1 before the experts of chunk c", "[schedule]") {
  // 2 sequences per rank and 4 chunks: token chunks, attention and gate once per layer.
  const Schedule s = moe::build_ep_schedule(ep_spec("chunked", 4), 3, true, 2, 8);
  check_well_formed(s, 16);
  CHECK_FALSE(s.front_per_part);
  for (int l = 0; l < 3; ++l) {
    const auto dispatch = where(s, StageKind::dispatch, l), experts = where(s, StageKind::experts, l);
    const auto combine = where(s, StageKind::combine, l), unpack = where(s, StageKind::unpack, l);
    REQUIRE(dispatch.size() == 4);
    for (int c = 0; c + 1 < 4; ++c) CHECK(dispatch[c + 1] < experts[c]);
    for (int c = 1; c < 4; ++c) CHECK(combine[c - 1] < experts[c]);
    for (int c = 0; c < 4; ++c) {
      CHECK(s.stages[dispatch[c]].stream == moe::Stream::send);
      CHECK(s.stages[experts[c]].after == std::vector<int>{dispatch[c]});
      CHECK(s.stages[unpack[c]].after == std::vector<int>{combine[c]});
    }
  }
}

TEST_CASE("schedule: immediate routing sends whole-sequence chunks on to the next layer", "[schedule]") {
  const Schedule s = moe::build_ep_schedule(ep_spec("chunked", 2), 2, true, 4, 3);
  CHECK(s.front_per_part);
  REQUIRE(s.parts.size() == 2);
  CHECK(s.parts[0].seqs == 2);
  CHECK(s.parts[1].seq0 == 2);
  // Layer 1's attention of chunk 0 comes right after layer 0's unpack of chunk 0, before chunk 1's.
  const auto unpack0 = where(s, StageKind::unpack, 0), attention1 = where(s, StageKind::attention, 1);
  REQUIRE(attention1.size() == 2);
  CHECK(attention1[0] > unpack0[0]);
  CHECK(attention1[0] < unpack0[1]);
  CHECK(s.stages[attention1[0]].after == std::vector<int>{unpack0[0]});
  // Without immediate routing the same chunks are token chunks behind a layer barrier.
  const Schedule barrier = moe::build_ep_schedule(ep_spec("chunked", 2, false), 2, true, 4, 3);
  CHECK_FALSE(barrier.front_per_part);
  CHECK(count(barrier, StageKind::attention) == 2);
}

TEST_CASE("schedule: two_batch has two micro-batches even with one sequence", "[schedule]") {
  const Schedule s = moe::build_ep_schedule(ep_spec("two_batch", 1), 2, true, 1, 1);
  check_well_formed(s, 1);
  REQUIRE(s.parts.size() == 2);
  CHECK(s.parts[0].rows == 0);   // every rank issues the same transfers, empty ones included
  CHECK(s.parts[1].rows == 1);
  CHECK(count(s, StageKind::dispatch) == 4);
  CHECK(count(s, StageKind::counts) == 2);
}

TEST_CASE("schedule: more chunks than tokens, chunks that do not divide", "[schedule]") {
  const Schedule many = moe::build_ep_schedule(ep_spec("chunked", 50), 1, false, 3, 1);
  check_well_formed(many, 3);
  CHECK(many.parts.size() == 3);
  const Schedule uneven = moe::build_ep_schedule(ep_spec("none", 4), 1, false, 2, 5);
  check_well_formed(uneven, 10);
  std::multiset<int64_t> sizes;
  for (const auto& p : uneven.parts) sizes.insert(p.rows);
  CHECK(sizes == std::multiset<int64_t>{2, 2, 3, 3});
  CHECK_THROWS(moe::build_ep_schedule(ep_spec("pipelined", 1), 1, false, 2, 5));
}

TEST_CASE("schedule: pipelined tp_pp posts the next micro-batch's receive before computing", "[schedule]") {
  moe::StrategyConfig s;
  s.kind = "tp_pp";
  s.microbatches = 3;
  s.overlap = "pipelined";
  const Schedule mid = moe::build_tp_pp_schedule(s, 1, 3, 2, true);
  CHECK(mid.posted_transfers);
  const auto recv = where(mid, StageKind::pp_recv, -1), send = where(mid, StageKind::pp_send, -1);
  REQUIRE(recv.size() == 3);
  REQUIRE(send.size() == 3);
  const auto attention = where(mid, StageKind::attention, 0);
  for (int m = 0; m + 1 < 3; ++m) CHECK(recv[m + 1] < attention[m]);
  s.overlap = "none";
  const Schedule blocking = moe::build_tp_pp_schedule(s, 1, 3, 2, true);
  CHECK_FALSE(blocking.posted_transfers);
  const auto brecv = where(blocking, StageKind::pp_recv, -1), batt = where(blocking, StageKind::attention, 0);
  for (int m = 0; m + 1 < 3; ++m) CHECK(brecv[m + 1] > batt[m]);
  CHECK(where(moe::build_tp_pp_schedule(s, 0, 3, 2, true), StageKind::pp_recv, -1).empty());
  CHECK(where(moe::build_tp_pp_schedule(s, 2, 3, 2, true), StageKind::pp_send, -1).empty());
}

TEST_CASE("schedule: serialized chains every stage after its predecessor; digests tell schedules apart", "[schedule]") {
  const Schedule s = moe::build_ep_schedule(ep_spec("chunked", 3), 2, true, 1, 6);
  const Schedule in_order = moe::serialized(s);
  CHECK(in_order.mode == OverlapMode::none);
  for (size_t i = 1; i < in_order.stages.size(); ++i) {
    const auto& a = in_order.stages[i].after;
    CHECK(std::find(a.begin(), a.end(), static_cast<int>(i) - 1) != a.end());
  }
  CHECK(s.digest() == moe::build_ep_schedule(ep_spec("chunked", 3), 2, true, 1, 6).digest());
  CHECK(s.digest() != moe::build_ep_schedule(ep_spec("chunked", 2), 2, true, 1, 6).digest());
  CHECK(s.digest() != in_order.digest());
}

TEST_CASE("spans: union and uncovered time of intervals", "[schedule]") {
  CHECK(moe::union_ms({{0, 2}, {1, 3}, {5, 6}}) == Approx(4));
  CHECK(moe::union_ms({}) == 0);
  CHECK(moe::union_ms({{2, 1}}) == 0);   // empty and reversed intervals count nothing
  // Communication [0, 10) with compute [2, 4) and [3, 6): 4 ms covered, 6 exposed.
  CHECK(moe::uncovered_ms({{0, 10}}, {{2, 4}, {3, 6}}) == Approx(6));
  CHECK(moe::uncovered_ms({{0, 1}, {4, 5}}, {{1, 4}}) == Approx(2));
  CHECK(moe::uncovered_ms({{0, 3}}, {{-1, 5}}) == Approx(0));
  // Per item, against one merged cover: the same as one uncovered_ms call per item.
  const std::vector<moe::Interval> items = {{0, 10}, {4, 5}, {9, 12}, {20, 21}};
  const std::vector<moe::Interval> cover = {{3, 6}, {2, 4}, {8, 9.5}, {11, 30}};
  const std::vector<double> each = moe::uncovered_each_ms(items, cover);
  REQUIRE(each.size() == items.size());
  for (size_t i = 0; i < items.size(); ++i) CHECK(each[i] == Approx(moe::uncovered_ms({items[i]}, cover)));
  CHECK(each[0] == Approx(4.5));   // [0,2) [6,8) [9.5,10)
  CHECK(each[3] == Approx(0));
}

TEST_CASE("routing: parts appended give the routing of the whole block", "[schedule]") {
  moe::Routing a = moe::empty_routing(4, 2);
  moe::Routing p1 = moe::route_top_k({0.1f, 0.2f, 0.3f, 0.4f, 0.4f, 0.3f, 0.2f, 0.1f}, 2, 4, 2, {1, 1, 1, 1}, true);
  moe::Routing p2 = moe::route_top_k({0.7f, 0.1f, 0.1f, 0.1f}, 1, 4, 2, {1, 1, 1, 1}, true);
  moe::append_routing(a, p1);
  moe::append_routing(a, p2);
  const moe::Routing whole = moe::route_top_k({0.1f, 0.2f, 0.3f, 0.4f, 0.4f, 0.3f, 0.2f, 0.1f, 0.7f, 0.1f, 0.1f, 0.1f}, 3, 4, 2,
                                              {1, 1, 1, 1}, true);
  CHECK(a.num_tokens == 3);
  CHECK(a.expert == whole.expert);
  CHECK(a.weight == whole.weight);
  CHECK(a.chosen_per_expert == whole.chosen_per_expert);
  CHECK_THROWS(moe::append_routing(a, moe::empty_routing(5, 2)));
}

TEST_CASE("schedule: simulate reports, for every shipped config, the schedule the strategies execute", "[schedule]") {
  int configs = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(MOE_SOURCE_DIR) + "/configs")) {
    if (entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path());
    const moe::Config c = moe::parse_config(nlohmann::json::parse(in));
    moe::SimulateOptions o;
    o.hardware = moe::default_profile(c.cluster);
    o.feasible_variant = false;
    const auto results = moe::simulate_config(c, o);
    ++configs;
    for (size_t i = 0; i < c.strategies.size(); ++i) {
      const moe::StrategyConfig& s = c.strategies[i];
      INFO(entry.path().filename().string() << " " << s.name);
      const auto& reported = results["strategies"][i]["layout"]["schedule"];
      if (s.kind == "ep") {
        CHECK(reported["prefill"] == moe::ep_step_schedule(c, s, c.workload.prompt_tokens).summary());
        CHECK(reported["decode_step"] == moe::ep_step_schedule(c, s, 1).summary());
      } else {
        CHECK(reported["step"] == moe::tp_pp_stage_schedule(c, s, 0).summary());
      }
    }
  }
  CHECK(configs >= 7);
}
