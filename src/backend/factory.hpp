// The one place that chooses a backend. Strategies only ever see ComputeBackend and Comm.
#pragma once
#include <memory>
#include <ostream>
#include <string>

#include "backend/backend.hpp"

namespace moe {

struct Backends {
  std::unique_ptr<ComputeBackend> compute;
  std::unique_ptr<Comm> world;     // every rank of the job (destroyed before `compute`)
  std::string notice;              // e.g. "no CUDA device: backend auto falls back to cpu"
  std::string runtime_json;        // cuda: driver/runtime/cuBLAS/NCCL versions and devices as a JSON object
};

// requested: "auto" | "cpu" | "cuda". model_dtype: the config's dtype (used by cuda; cpu is fp32, or
// emulates model_dtype when `emulate_dtype`). Collective over MPI_COMM_WORLD. Throws ConfigError if
// "cuda" is requested but unavailable.
Backends make_backends(const std::string& requested, const std::string& model_dtype, bool emulate_dtype = false);

// True when this binary was built with the CUDA backend.
bool cuda_backend_compiled();

// Checks every kernel and collective of `backend` ("cuda") against the CPU backend and prints one
// line per item. Collective. Returns 0 all passed, 1 any failure, 2 backend unavailable (no device,
// or not built).
int run_backend_selftest(const std::string& backend, std::ostream& out);

}  // namespace moe
