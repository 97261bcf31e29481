// Shared test check: `f` must throw a ConfigError whose JSON path is `path` and whose message
// contains `needle`.
#pragma once
#include <catch2/catch.hpp>

#include <functional>
#include <string>

#include "core/error.hpp"

namespace moe::testing {

inline void expect_config_error(const std::function<void()>& f, const std::string& path, const std::string& needle) {
  INFO("expected ConfigError at '" << path << "' mentioning '" << needle << "'");
  try {
    f();
  } catch (const ConfigError& e) {
    INFO("got: " << e.what());
    CHECK(e.path() == path);
    CHECK_THAT(std::string(e.what()), Catch::Contains(needle));
    return;
  }
  FAIL("no ConfigError was thrown");
}

}  // namespace moe::testing
