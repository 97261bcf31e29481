// compare: results file checks (file and reason in every error), rows, ratios against a baseline,
// measured-vs-simulated prediction error, and the text, markdown, csv, json and html renderings.
#include <catch2/catch.hpp>

#include <algorithm>
#include <sstream>

#include "expect_config_error.hpp"
#include "report/compare.hpp"
#include "report/compare_format.hpp"

using namespace moe;
using json = nlohmann::json;

namespace {

json strategy(const std::string& name, const std::string& kind, double prefill_tps, double decode_tps, double tpot_ms) {
  return {{"name", name},
          {"kind", kind},
          {"prefill", {{"tokens_per_s", prefill_tps}}},
          {"decode", {{"tokens_per_s", decode_tps}, {"tpot_ms", {{"mean", tpot_ms}, {"p50", tpot_ms}, {"p99", tpot_ms * 1.5}}}}},
          {"load", json::object()},
          {"verification", {{"checked", true}, {"max_rel_error", 2.5e-7}, {"passed", true}}}};
}

json document(const std::string& config, const std::string& mode, std::vector<json> strategies) {
  return {{"schema_version", 1},
          {"tool", {{"name", "moe-bench"}, {"version", "0.1.0"}}},
          {"context", {{"mode", mode}, {"backend", mode == "simulated" ? "cuda" : "cpu"}, {"world_size", 16}}},
          {"config", {{"name", config}}},
          {"strategies", strategies},
          {"comparison", json::array()}};
}

// A measured file (baseline, proposed) and a simulated one of the same config.
std::vector<ResultsDocument> measured_and_simulated() {
  json m = document("demo", "measured", {strategy("baseline", "tp_pp", 1000, 400, 40), strategy("proposed", "ep", 2000, 600, 25)});
  m["strategies"][1]["load"]["min_gpu_balancedness"] = 0.75;
  json s = document("demo", "simulated", {strategy("baseline", "tp_pp", 1100, 500, 32), strategy("proposed", "ep", 1500, 800, 30)});
  for (auto& st : s["strategies"]) st["verification"] = {{"checked", false}, {"reason", "simulated"}};
  s["strategies"][1]["overlap"] = {{"prefill", {{"comm_ms", 10}, {"exposed_comm_ms", 2}, {"efficiency", 0.8}}},
                                   {"decode_step", {{"comm_ms", 1}, {"exposed_comm_ms", 0.05}, {"efficiency", 0.95}}}};
  return {{"m.json", m}, {"s.json", s}};
}

}  // namespace

TEST_CASE("results files that compare cannot read are refused with the file and the reason", "[compare]") {
  const json good = document("demo", "measured", {strategy("a", "ep", 1, 1, 1)});
  CHECK_NOTHROW(check_results_document(good, "good.json"));

  json v2 = good;
  v2["schema_version"] = 2;
  testing::expect_config_error([&] { check_results_document(v2, "v2.json"); }, "v2.json", "schema_version 2 is not supported");

  const json plan = {{"schema_version", 1}, {"algorithm", "balanced"}, {"num_ranks", 16}, {"layers", json::array()}};
  testing::expect_config_error([&] { check_results_document(plan, "plan.json"); }, "plan.json", "placement plan");

  json other = good;
  other["tool"]["name"] = "nccl-tests";
  testing::expect_config_error([&] { check_results_document(other, "o.json"); }, "o.json", "not a moe-bench results file");
  testing::expect_config_error([&] { check_results_document(json::array(), "arr.json"); }, "arr.json",
                               "not a moe-bench results file");

  json no_tpot = document("demo", "measured", {strategy("a", "ep", 1, 1, 1), strategy("b", "ep", 1, 1, 1)});
  no_tpot["strategies"][1]["decode"]["tpot_ms"].erase("mean");
  testing::expect_config_error([&] { check_results_document(no_tpot, "t.json"); }, "t.json",
                               "strategies[1].decode.tpot_ms.mean is missing");

  json text_tps = good;
  text_tps["strategies"][0]["decode"]["tokens_per_s"] = "fast";
  testing::expect_config_error([&] { check_results_document(text_tps, "x.json"); }, "x.json", "must be a number");

  testing::expect_config_error([] { parse_results_text("{not json", "broken.json"); }, "broken.json", "not valid JSON");
  testing::expect_config_error([] { load_results_file("/nonexistent/r.json"); }, "/nonexistent/r.json", "cannot open");
}

TEST_CASE("a sweep file is one document per element, each checked", "[compare]") {
  const json a = document("demo", "simulated", {strategy("a", "ep", 1, 1, 1)});
  const json arr = json::array({a, a});
  const auto docs = parse_results_text(arr.dump(), "sweep.json");
  REQUIRE(docs.size() == 2);
  CHECK(docs[1].label == "sweep.json[1]");
  json bad = arr;
  bad[1]["schema_version"] = 7;
  testing::expect_config_error([&] { parse_results_text(bad.dump(), "sweep.json"); }, "sweep.json[1]", "schema_version 7");
}

TEST_CASE("rows carry ratios against each file's baseline, overlap and verification", "[compare]") {
  const auto docs = measured_and_simulated();
  const CompareTable t = build_compare_table(docs, {});
  REQUIRE(t.rows.size() == 4);
  CHECK(t.notes.empty());
  const CompareRow& proposed = t.rows[1];
  CHECK(proposed.file == "m.json");
  CHECK(proposed.baseline == "baseline");
  CHECK(*proposed.decode_tps_ratio == Approx(1.5));
  CHECK(*proposed.prefill_tps_ratio == Approx(2.0));
  CHECK(*proposed.tpot_vs_baseline == Approx(25.0 / 40.0));
  CHECK(*proposed.gpu_balancedness == Approx(0.75));
  CHECK_FALSE(t.rows[0].gpu_balancedness);  // absent: shown as "-"
  CHECK(proposed.verified);
  CHECK(*proposed.passed);
  CHECK(*proposed.max_rel_error == Approx(2.5e-7));
  CHECK_FALSE(proposed.overlap_decode);
  const CompareRow& sim_proposed = t.rows[3];
  CHECK(*sim_proposed.overlap_decode == Approx(0.95));
  CHECK(*sim_proposed.overlap_prefill == Approx(0.8));
  CHECK_FALSE(sim_proposed.verified);
  CHECK_FALSE(sim_proposed.passed);

  // A named baseline: ratios against it; the baseline's own ratios are 1.
  CompareOptions o;
  o.baseline = "proposed";
  const CompareTable t2 = build_compare_table(docs, o);
  CHECK(*t2.rows[0].decode_tps_ratio == Approx(400.0 / 600.0));
  CHECK(*t2.rows[1].decode_tps_ratio == Approx(1.0));
  CHECK(*t2.rows[2].tpot_vs_baseline == Approx(32.0 / 30.0));
}

TEST_CASE("a baseline missing from some files leaves their ratios empty, from all files is an error", "[compare]") {
  auto docs = measured_and_simulated();
  docs.push_back({"other.json", document("other", "measured", {strategy("x", "ep", 1, 1, 1)})});
  CompareOptions o;
  o.baseline = "baseline";
  const CompareTable t = build_compare_table(docs, o);
  REQUIRE(t.rows.size() == 5);
  CHECK_FALSE(t.rows[4].decode_tps_ratio);
  CHECK(t.rows[4].baseline.empty());
  REQUIRE(t.notes.size() == 1);
  CHECK_THAT(t.notes[0], Catch::Contains("other.json") && Catch::Contains("'baseline'"));
  o.baseline = "nope";
  testing::expect_config_error([&] { build_compare_table(docs, o); }, "--baseline", "no results file has a strategy named 'nope'");
}

TEST_CASE("measured and simulated rows of one config and strategy get the prediction error", "[compare]") {
  auto docs = measured_and_simulated();
  docs.push_back({"lonely.json", document("lonely", "measured", {strategy("baseline", "tp_pp", 1, 1, 1)})});
  const CompareTable t = build_compare_table(docs, {});
  // baseline: simulated 32 ms vs measured 40 ms -> -20 %, on both rows.
  CHECK(*t.rows[0].tpot_prediction_error == Approx(-0.2));
  CHECK(*t.rows[2].tpot_prediction_error == Approx(-0.2));
  CHECK(t.rows[0].counterpart == "s.json");
  CHECK(t.rows[2].counterpart == "m.json");
  // proposed: 30 vs 25 ms -> +20 %; prefill 1500 vs 2000 tok/s -> -25 %.
  CHECK(*t.rows[1].tpot_prediction_error == Approx(0.2));
  CHECK(*t.rows[1].prefill_tps_prediction_error == Approx(-0.25));
  // Another config of the same strategy name has no counterpart.
  CHECK_FALSE(t.rows[4].tpot_prediction_error);
  CHECK(t.rows[4].counterpart.empty());
  // Nor has the same config simulated at another size (a sweep point).
  auto sized = measured_and_simulated();
  sized[1].doc["context"]["world_size"] = 32;
  const CompareTable t3 = build_compare_table(sized, {});
  for (const CompareRow& r : t3.rows) CHECK_FALSE(r.tpot_prediction_error);
  CHECK_FALSE(relative_error(1, 0));
}

TEST_CASE("cell formats", "[compare]") {
  CHECK(format_rate(5663.55) == "5,664");
  CHECK(format_rate(1234567) == "1,234,567");
  CHECK(format_rate(595.26) == "595");
  CHECK(format_rate(12.34) == "12.3");
  CHECK(format_ms(26.879) == "26.9");
  CHECK(format_ms(0.012345) == "0.0123");
  CHECK(format_ms(1234.4) == "1234");
  CHECK(format_ratio(1.4410) == "1.44x");
  CHECK(format_ratio(std::nullopt) == "-");
  CHECK(format_percent(0.2) == "+20.0%");
  CHECK(format_percent(-0.125) == "-12.5%");
  CHECK(csv_escape("a,b") == "\"a,b\"");
  CHECK(csv_escape("say \"hi\"") == "\"say \"\"hi\"\"\"");
  CHECK(csv_escape("plain") == "plain");
  CHECK(html_escape("<a&b>") == "&lt;a&amp;b&gt;");
}

TEST_CASE("text, markdown, csv and json renderings agree on rows and columns", "[compare]") {
  const CompareTable t = build_compare_table(measured_and_simulated(), {});
  const std::vector<std::string> files = {"m.json", "s.json"};

  const std::string text = format_compare_text(t);
  std::istringstream lines(text);
  std::string header, row;
  std::getline(lines, header);
  CHECK_THAT(header, Catch::StartsWith("file") && Catch::Contains("TPOT pred err"));
  std::getline(lines, row);
  // Aligned: the strategy column starts at the same offset in the header and the rows.
  CHECK(row.find("baseline") != std::string::npos);
  CHECK(header.find("strategy") == row.find("baseline"));
  CHECK_THAT(text, Catch::Contains("PASS 2.5e-07") && Catch::Contains("0.95/0.80") && Catch::Contains("-20.0%"));

  const std::string md = format_compare_markdown(t);
  CHECK_THAT(md, Catch::Contains("[decode tok/s](results/README.md#decode-toks)"));
  CHECK(std::count(md.begin(), md.end(), '\n') == 2 + 4);

  const std::string csv = format_compare_csv(t);
  std::istringstream csv_lines(csv);
  std::string csv_header;
  std::getline(csv_lines, csv_header);
  std::string keys;
  const nlohmann::ordered_json fields = compare_row_json(CompareRow{});
  for (const auto& [k, v] : fields.items()) keys += (keys.empty() ? "" : ",") + k;
  CHECK(csv_header == keys);
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 1 + 4);

  const json j = json::parse(format_compare_json(t, files));
  REQUIRE(j["rows"].size() == 4);
  CHECK(j["files"] == json(files));
  CHECK(j["rows"][1]["decode_tps_ratio"].get<double>() == Approx(1.5));
  CHECK(j["rows"][0]["overlap_decode_efficiency"].is_null());
  CHECK(j["rows"][3]["overlap_decode_efficiency"].get<double>() == Approx(0.95));
  CHECK(j["rows"][2]["verification_passed"].is_null());

  testing::expect_config_error([&] { format_compare(t, "xml", files); }, "--format", "got 'xml'");
}

TEST_CASE("the html page is self-contained, escapes names and draws its charts", "[compare]") {
  auto docs = measured_and_simulated();
  docs[0].doc["strategies"][1]["name"] = "ep<script>";
  docs[1].doc["strategies"][1]["name"] = "ep<script>";
  const CompareTable t = build_compare_table(docs, {});
  const std::string html = format_compare_html(t, {"m.json", "s.json"});
  CHECK_THAT(html, Catch::StartsWith("<!DOCTYPE html>") && Catch::Contains("</html>"));
  CHECK_THAT(html, Catch::Contains("ep&lt;script&gt;"));
  CHECK_THAT(html, !Catch::Contains("<script"));
  CHECK_THAT(html, !Catch::Contains("src="));
  CHECK_THAT(html, !Catch::Contains("href=\"http"));
  // Decode throughput, TPOT, ratio to baseline, measured vs simulated.
  size_t charts = 0;
  for (size_t p = 0; (p = html.find("<svg", p)) != std::string::npos; ++p) ++charts;
  CHECK(charts == 4);  // the fixtures have no phases_ms: no phase chart
  CHECK_THAT(html, Catch::Contains("Measured vs simulated TPOT"));
  // One bar per row in the decode chart: each row's label appears with its value.
  CHECK_THAT(html, Catch::Contains("demo · baseline (sim)"));

  // With phases: a fifth chart, one segment per phase with time, widths in proportion.
  docs[0].doc["strategies"][0]["phases_ms"] = {
      {"decode_step", {{"attention", {{"max", 4}, {"mean", 3}}}, {"expert", {{"max", 2}, {"mean", 1}}},
                       {"idle", {{"max", 0}, {"mean", 0}}}}}};
  const CompareTable tp = build_compare_table(docs, {});
  REQUIRE(tp.rows[0].decode_phase_ms.size() == 3);
  CHECK(tp.rows[0].decode_phase_ms[0] == std::make_pair(std::string("attention"), 3.0));
  CHECK(tp.rows[0].decode_phase_ms[2].first == "idle");  // layer order, not the results file's key order
  CHECK(phase_rank("gate") < phase_rank("combine"));
  CHECK(phase_rank("custom") == phase_order().size());
  const std::string with_phases = format_compare_html(tp, {"m.json", "s.json"});
  CHECK_THAT(with_phases, Catch::Contains("Decode step by phase"));
  CHECK_THAT(with_phases, Catch::Contains("width=\"315\" height=\"16\" fill=\"#4e79a7\"><title>attention: 3.00 ms"));
  CHECK_THAT(with_phases, Catch::Contains("width=\"105\" height=\"16\" fill=\"#59a14f\"><title>expert: 1.00 ms"));
  CHECK_THAT(with_phases, !Catch::Contains("<title>idle"));
}
