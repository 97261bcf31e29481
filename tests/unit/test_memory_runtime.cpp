// The CUDA runtime part of the memory estimate (add_cuda_runtime): workspaces, cuBLAS, context and
// one NCCL constant per communicator, counted in the total and named in describe().
#include <catch2/catch.hpp>

#include "core/config.hpp"
#include "cost/memory.hpp"

TEST_CASE("memory: the CUDA runtime adds workspaces, context and NCCL per communicator", "[memory]") {
  moe::StrategyConfig tp_pp, ep;
  tp_pp.kind = "tp_pp";
  ep.kind = "ep";
  const int64_t MiB = int64_t(1) << 20;
  moe::MemoryEstimate a, b;
  a.weights_bytes = 1000;
  moe::add_cuda_runtime(a, tp_pp, 256 * MiB, 64 * MiB);
  moe::add_cuda_runtime(b, ep, 256 * MiB, 64 * MiB);
  const int64_t fixed = 256 * MiB + 64 * MiB + 3 * moe::kCublasWorkspaceBytes + moe::kCudaContextBytes;
  CHECK(a.runtime_bytes == fixed + 3 * moe::kNcclCommunicatorBytes);  // world, tp and pp groups
  CHECK(b.runtime_bytes == fixed + moe::kNcclCommunicatorBytes);
  CHECK(a.total_bytes() == 1000 + a.runtime_bytes);
  CHECK(a.describe().find("CUDA runtime") != std::string::npos);
  CHECK(moe::MemoryEstimate{}.describe().find("CUDA runtime") == std::string::npos);
}
