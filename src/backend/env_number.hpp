// Numeric tuning knobs read from the environment (MOE_CUDA_* sizes): one parser, checked on the CPU.
#pragma once

namespace moe {

// The finite, non-negative number in environment variable `name`, or `fallback` when it is unset or
// empty. Anything else (text, trailing characters, a negative value, nan, inf) is a ConfigError
// naming the variable.
double env_number(const char* name, double fallback);

}  // namespace moe
