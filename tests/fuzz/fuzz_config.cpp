// libFuzzer target: arbitrary bytes through the config path a run takes (JSON parse, typed parse,
// validate_config, validate_for_run on the config's own world size, the defaults echo) and, for
// every accepted config, the round trip through config_to_json. The contract under test: any input
// either passes or raises ConfigError naming a JSON path; anything else (another exception, a
// crash, a sanitizer report, a hang or an allocation past -rss_limit_mb) is a finding.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/config.hpp"
#include "core/error.hpp"
#include "runner/run_validation.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  moe::Config c;
  try {
    c = moe::parse_config_text(text, "fuzz-input");
    moe::validate_config(c);
    const int ranks = c.cluster.nodes * c.cluster.gpus_per_node;
    for (int bytes : {4, 2}) moe::validate_for_run(c, ranks, bytes, bytes == 4 ? "cpu" : "cuda");
  } catch (const moe::ConfigError&) {
    return 0;  // rejected with a named path: the expected outcome for bad input
  }
  // Accepted: the results echo must parse back to the same config.
  const auto echo = moe::config_to_json(c);
  try {
    const moe::Config again = moe::parse_config(nlohmann::json::parse(echo.dump()));
    if (moe::config_to_json(again) != echo) {
      std::fprintf(stderr, "config_to_json round trip changed the config:\n%s\n", echo.dump().c_str());
      std::abort();
    }
  } catch (const moe::ConfigError& e) {
    std::fprintf(stderr, "the defaults echo of an accepted config is rejected: %s\n%s\n", e.what(), echo.dump().c_str());
    std::abort();
  }
  return 0;
}
