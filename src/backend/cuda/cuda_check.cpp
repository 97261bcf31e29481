// Out-of-line message construction for the CUDA / cuBLAS / NCCL check macros.
#include "backend/cuda/cuda_check.hpp"

#include <sstream>

#include "core/error.hpp"

namespace moe {
namespace {
[[noreturn]] void raise(const char* library, const std::string& what, const char* call, const char* file, int line) {
  std::ostringstream os;
  os << library << " error: " << what << " (in `" << call << "` at " << file << ":" << line << ")";
  throw Error(os.str());
}
}  // namespace

void throw_cuda_error(cudaError_t code, const char* call, const char* file, int line) {
  raise("CUDA", std::string(cudaGetErrorName(code)) + ": " + cudaGetErrorString(code), call, file, line);
}

void throw_cublas_error(cublasStatus_t code, const char* call, const char* file, int line) {
  raise("cuBLAS", std::string(cublasGetStatusName(code)) + ": " + cublasGetStatusString(code), call, file, line);
}

void throw_nccl_error(ncclResult_t code, const char* call, const char* file, int line, ncclComm_t comm) {
  std::string what = ncclGetErrorString(code);
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && last[0] != '\0') what += std::string(" (") + last + ")";
  raise("NCCL", what, call, file, line);
}

}  // namespace moe
