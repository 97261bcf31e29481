// env_number (see env_number.hpp).
#include "backend/env_number.hpp"

#include <cmath>
#include <cstdlib>
#include <string>

#include "core/error.hpp"

namespace moe {

double env_number(const char* name, double fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const double x = std::strtod(v, &end);
  // strtod accepts "nan" and "inf": neither is a size or a number of seconds.
  if (end == v || *end != '\0' || !std::isfinite(x) || x < 0)
    throw ConfigError(name, std::string("expected a finite non-negative number, got '") + v + "'");
  return x;
}

}  // namespace moe
