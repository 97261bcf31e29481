// CPU implementation of ComputeBackend: FP32 host memory, OpenBLAS sgemm (one thread per rank),
// eager execution (every operation completes before it returns, which satisfies stream order).
// With precision fp16 or bf16 it emulates a 16-bit device: every store is rounded to that format.
#pragma once
#include <memory>

#include "backend/backend.hpp"

namespace moe {

std::unique_ptr<ComputeBackend> make_cpu_compute(DType precision = DType::f32);

}  // namespace moe
