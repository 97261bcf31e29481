// CPU implementation of ComputeBackend: FP32 host memory, OpenBLAS sgemm (one thread per rank),
// eager execution (every operation completes before it returns, which satisfies stream order).
#pragma once
#include <memory>

#include "backend/backend.hpp"

namespace moe {

std::unique_ptr<ComputeBackend> make_cpu_compute();

}  // namespace moe
