// Creation of the cuda Backends with agreement across ranks (no rank is left waiting in NCCL setup
// when another has no GPU), and the CUDA / cuBLAS / NCCL version report.
#include "backend/cuda/cuda_factory.hpp"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <exception>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_compute.hpp"
#include "backend/cuda/nccl_comm.hpp"
#include "core/error.hpp"
#include "core/mpi_session.hpp"

namespace moe {
namespace {

std::string cuda_error_text(const char* call, cudaError_t rc) {
  (void)cudaGetLastError();  // probing failures must not leak into later launch checks
  return std::string(call) + ": " + cudaGetErrorString(rc);
}

std::string version_text(int v) {  // CUDA encodes 1000 * major + 10 * minor
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

// Binds this rank to a device; returns "" or why no device is usable.
std::string probe_device(int local_rank, int* device) {
  int count = 0;
  cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess) {
    int driver = 0;
    const bool no_driver = cudaDriverGetVersion(&driver) != cudaSuccess || driver == 0;
    return (no_driver ? "no NVIDIA driver is loaded; " : "") + cuda_error_text("cudaGetDeviceCount", rc);
  }
  if (count == 0) return "no CUDA device is visible to this process";
  *device = local_rank % count;
  rc = cudaSetDevice(*device);
  if (rc == cudaSuccess) rc = cudaFree(nullptr);  // creates the context: fails early on busy or broken devices
  if (rc != cudaSuccess) return cuda_error_text(("device " + std::to_string(*device)).c_str(), rc);
  return "";
}

// NCCL needs one GPU per rank. Devices are compared by UUID, so per-rank CUDA_VISIBLE_DEVICES
// (every rank seeing "device 0") is recognised as distinct GPUs.
std::string check_unique_gpus(MPI_Comm local, int device, const std::string& reason) {
  int local_rank = 0, local_size = 1;
  MOE_MPI_CHECK(MPI_Comm_rank(local, &local_rank));
  MOE_MPI_CHECK(MPI_Comm_size(local, &local_size));
  char uuid[16] = {0};
  const bool have = reason.empty();
  if (have) {
    cudaDeviceProp prop{};
    const cudaError_t rc = cudaGetDeviceProperties(&prop, device);
    if (rc != cudaSuccess) return cuda_error_text("cudaGetDeviceProperties", rc);
    std::memcpy(uuid, prop.uuid.bytes, sizeof(uuid));
  }
  std::vector<char> all(16 * static_cast<size_t>(local_size));
  std::vector<int> has(local_size);
  int mine = have ? 1 : 0;
  MOE_MPI_CHECK(MPI_Allgather(uuid, 16, MPI_BYTE, all.data(), 16, MPI_BYTE, local));
  MOE_MPI_CHECK(MPI_Allgather(&mine, 1, MPI_INT, has.data(), 1, MPI_INT, local));
  if (!have) return reason;
  for (int r = 0; r < local_size; ++r) {
    if (r == local_rank || !has[r] || std::memcmp(&all[16 * r], uuid, 16) != 0) continue;
    return "local ranks " + std::to_string(std::min(r, local_rank)) + " and " + std::to_string(std::max(r, local_rank)) +
           " of this host share one GPU; NCCL needs one GPU per rank (start at most as many ranks per host as GPUs)";
  }
  return "";
}

// `reason` of the lowest failing rank on every rank ("" if none failed), and that rank.
std::string agree_on_failure(const std::string& reason, int world_rank, int* failing_rank) {
  int bad = reason.empty() ? INT_MAX : world_rank;
  MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  *failing_rank = bad;
  if (bad == INT_MAX) return "";
  int len = bad == world_rank ? static_cast<int>(reason.size()) : 0;
  MOE_MPI_CHECK(MPI_Bcast(&len, 1, MPI_INT, bad, MPI_COMM_WORLD));
  std::string text = bad == world_rank ? reason : std::string(static_cast<size_t>(len), ' ');
  if (len > 0) MOE_MPI_CHECK(MPI_Bcast(&text[0], len, MPI_CHAR, bad, MPI_COMM_WORLD));
  return text;
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string probe_cuda_devices() {
  int world_rank = 0, world_size = 1;
  MOE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
  MOE_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_size));
  MPI_Comm local = MPI_COMM_NULL;
  MOE_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &local));
  int local_rank = 0;
  MPI_Comm_rank(local, &local_rank);

  int device = -1;
  std::string reason = probe_device(local_rank, &device);
  std::exception_ptr local_error;
  try {
    reason = check_unique_gpus(local, device, reason);
  } catch (...) {
    local_error = std::current_exception();
  }
  MPI_Comm_free(&local);
  if (local_error) std::rethrow_exception(local_error);

  int failing = INT_MAX;
  const std::string agreed = agree_on_failure(reason, world_rank, &failing);
  if (failing == INT_MAX) return "";
  return world_size > 1 ? "rank " + std::to_string(failing) + ": " + agreed : agreed;
}

Backends make_cuda_backends(const std::string& model_dtype, bool required) {
  const DType dtype = parse_dtype(model_dtype);  // same config on every rank: all throw alike
  int world_rank = 0;
  MOE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
  const std::string problem = probe_cuda_devices();
  if (!problem.empty()) {
    if (required) throw ConfigError("run.backend", "backend cuda requested but no CUDA device is usable: " + problem);
    Backends none;
    none.notice = "backend auto falls back to cpu, no usable CUDA device: " + problem;
    return none;
  }
  int device = 0;
  MOE_CUDA_CHECK(cudaGetDevice(&device));

  // Setup failures after this point are agreed on as well, so that no rank enters NCCL
  // initialisation while another has already given up.
  Backends b;
  std::exception_ptr error;
  try {
    b.compute = std::make_unique<CudaComputeBackend>(dtype, device, cuda_backend_options_from_env());
  } catch (...) {
    error = std::current_exception();
  }
  int bad = error ? world_rank : INT_MAX;
  MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  if (error) std::rethrow_exception(error);
  if (bad != INT_MAX) throw Error("CUDA backend setup failed on rank " + std::to_string(bad));
  b.world = NcclComm::world(static_cast<CudaComputeBackend&>(*b.compute));
  return b;
}

CudaRuntimeInfo cuda_runtime_info() {
  CudaRuntimeInfo info;
  int v = 0;
  if (cudaDriverGetVersion(&v) == cudaSuccess && v > 0) info.driver_version = version_text(v);
  v = 0;
  if (cudaRuntimeGetVersion(&v) == cudaSuccess && v > 0) info.runtime_version = version_text(v);
  int major = 0, minor = 0, patch = 0;
  if (cublasGetProperty(MAJOR_VERSION, &major) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(MINOR_VERSION, &minor) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(PATCH_LEVEL, &patch) == CUBLAS_STATUS_SUCCESS)
    info.cublas_version = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  int nccl = 0;
  if (ncclGetVersion(&nccl) == ncclSuccess && nccl > 0) {
    // NCCL_VERSION_CODE: 1000*major + 100*minor + patch before 2.9, 10000*major + 100*minor + patch since.
    const int div = nccl >= 20900 ? 10000 : 1000;
    info.nccl_version = std::to_string(nccl / div) + "." + std::to_string((nccl % div) / 100) + "." +
                        std::to_string(nccl % 100);
  }
  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess) {
    info.error = cuda_error_text("cudaGetDeviceCount", rc);
    return info;
  }
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp prop{};
    char bus[32] = {0};
    if (cudaGetDeviceProperties(&prop, d) != cudaSuccess || cudaDeviceGetPCIBusId(bus, sizeof(bus), d) != cudaSuccess) {
      (void)cudaGetLastError();
      info.devices.push_back("device " + std::to_string(d) + " (properties unavailable)");
      continue;
    }
    char text[512];
    std::snprintf(text, sizeof(text), "%s (sm_%d%d, %.1f GiB, PCI %s)", prop.name, prop.major, prop.minor,
                  double(prop.totalGlobalMem) / double(1 << 30), bus);
    info.devices.push_back(text);
  }
  if (count == 0) info.error = "no CUDA device is visible to this process";
  return info;
}

std::string cuda_versions_json_fragment() {
  const CudaRuntimeInfo info = cuda_runtime_info();
  std::string out = "{\"cuda_driver\":\"" + json_escape(info.driver_version) + "\",\"cuda_runtime\":\"" +
                    json_escape(info.runtime_version) + "\",\"cublas\":\"" + json_escape(info.cublas_version) +
                    "\",\"nccl\":\"" + json_escape(info.nccl_version) + "\",\"devices\":[";
  for (size_t i = 0; i < info.devices.size(); ++i) out += (i ? ",\"" : "\"") + json_escape(info.devices[i]) + "\"";
  out += "],\"error\":\"" + json_escape(info.error) + "\"}";
  return out;
}

}  // namespace moe
