// The device-wait limit (see wait_policy.hpp).
#include "backend/wait_policy.hpp"

#include <exception>

#include "core/error.hpp"
#include "core/watchdog.hpp"

namespace moe {

double device_wait_timeout_s(double run_timeout_s, const char* legacy_env_value) {
  if (legacy_env_value != nullptr && legacy_env_value[0] != '\0')
    throw ConfigError("MOE_CUDA_SYNC_TIMEOUT_S", std::string("is replaced by run.timeout_s (or run --timeout-s), which ") +
                                                     "bounds device waits too; unset it (got '" + legacy_env_value + "')");
  return run_timeout_s;
}

bool device_teardown_may_wait() { return std::uncaught_exceptions() == 0 && !watchdog::aborting(); }

}  // namespace moe
