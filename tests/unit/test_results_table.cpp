// The console table of a results document: errors in scientific notation, the TPOT comparison in
// words that stay true when the strategy is slower.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

#include "report/results.hpp"

using namespace moe;

TEST_CASE("TPOT comparison reads lower or higher, never a ratio below 1 called lower", "[results]") {
  CHECK(tpot_change_text(1.4410) == "1.44x lower");
  CHECK(tpot_change_text(1.0) == "1.00x lower");
  CHECK(tpot_change_text(0.97) == "1.03x higher");
  CHECK(tpot_change_text(0) == "n/a");
  CHECK(scientific(6.2e-7) == "6.2e-07");
  CHECK(scientific(0.0123) == "1.2e-02");
}

TEST_CASE("the console table of a shipped result", "[results]") {
  std::ifstream in(std::string(MOE_SOURCE_DIR) + "/results/cpu-16rank.json");
  REQUIRE(in);
  nlohmann::ordered_json r = nlohmann::ordered_json::parse(in);
  // Known values in place of the measured ones, so that the expected text does not depend on a run.
  r["comparison"][0]["tps_ratio"] = 1.4412;
  r["comparison"][0]["tpot_ratio"] = 0.97;
  r["comparison"][0]["prefill_tps_ratio"] = 1.7349;
  r["strategies"][1]["verification"]["max_rel_error"] = 5.7e-7;
  r["strategies"][1]["overlap"]["prefill"]["efficiency"] = 0.613;
  r["strategies"][1]["overlap"]["prefill"]["comm_ms"] = 1.0;
  r["strategies"][1]["overlap"]["decode_step"]["efficiency"] = 0.2;
  r["strategies"][1]["overlap"]["decode_step"]["comm_ms"] = 1.0;
  std::ostringstream out;
  print_table(out, r);
  const std::string text = out.str();
  CHECK_THAT(text, Catch::Contains("proposed vs baseline: decode TPS x1.44, TPOT 1.03x higher, prefill TPS x1.73"));
  CHECK_THAT(text, Catch::Contains("5.7e-07"));
  CHECK_THAT(text, Catch::Contains("0.61/0.20"));   // the overlap column: prefill / decode efficiency
  CHECK_THAT(text, !Catch::Contains("e-6 "));
}
