// Entry points of the CUDA backend for the rest of the program: creating the cuda Backends
// (collective, all ranks agree) and describing the CUDA / NCCL runtime for the results context.
// Plain C++: includes no CUDA, NCCL or MPI header.
#pragma once
#include <string>
#include <vector>

#include "backend/factory.hpp"

namespace moe {

// Collective over MPI_COMM_WORLD. Picks device local_rank % device_count (local rank within the
// host), checks that no two ranks of a host share a GPU, and agrees across all ranks: if any rank
// has no usable device, then every rank either throws the same ConfigError("run.backend", ...)
// (required) or returns Backends with compute == nullptr and `notice` saying why (not required).
// Otherwise returns the CudaComputeBackend (dtype from model_dtype: fp16 | bf16 | fp32) and the
// world NcclComm. Throws ConfigError("model.dtype", ...) for an unknown dtype.
Backends make_cuda_backends(const std::string& model_dtype, bool required);

// The collective device check make_cuda_backends starts with: binds this rank to its device and
// returns "" when every rank has a GPU of its own, else the same reason on every rank
// ("rank r: <CUDA error string>" on more than one rank).
std::string probe_cuda_devices();

// Versions and devices seen by this process. Local (not collective), never throws; pieces that
// cannot be queried (no driver, no device) stay empty / zero.
struct CudaRuntimeInfo {
  std::string driver_version;        // CUDA version the driver supports, e.g. "13.0"
  std::string runtime_version;       // CUDA runtime linked in, e.g. "13.0"
  std::string cublas_version;        // e.g. "13.0.2"
  std::string nccl_version;          // e.g. "2.28.9"
  std::vector<std::string> devices;  // [visible devices] "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB, PCI 0000:1b:00.0)"
  std::string error;                 // why devices is empty, if it is
};
CudaRuntimeInfo cuda_runtime_info();

// cuda_runtime_info() as one JSON object:
// {"cuda_driver":"13.0","cuda_runtime":"13.0","cublas":"13.0.2","nccl":"2.28.9","devices":[...],"error":""}
std::string cuda_versions_json_fragment();

}  // namespace moe
