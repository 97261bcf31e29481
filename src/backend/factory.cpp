// The one place that chooses a backend (and the only #ifdef on the CUDA build).
#include "backend/factory.hpp"

#include "backend/cpu/cpu_compute.hpp"
#include "backend/cpu/mpi_comm.hpp"
#include "core/error.hpp"
#ifdef MOE_HAVE_CUDA
#include "backend/cuda/cuda_factory.hpp"
#include "backend/cuda/selftest.hpp"
#endif

namespace moe {

bool cuda_backend_compiled() {
#ifdef MOE_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

Backends make_backends(const std::string& requested, const std::string& model_dtype, bool emulate_dtype) {
  if (requested != "auto" && requested != "cpu" && requested != "cuda")
    throw ConfigError("run.backend", "unknown backend '" + requested + "' (auto | cpu | cuda)");
  Backends b;
  if (requested == "cuda" || requested == "auto") {
#ifdef MOE_HAVE_CUDA
    b = make_cuda_backends(model_dtype, requested == "cuda");
    if (b.compute) {
      b.runtime_json = cuda_versions_json_fragment();
      return b;
    }
#else
    (void)model_dtype;
    if (requested == "cuda")
      throw ConfigError("run.backend", "backend cuda requested but this binary was built without CUDA (MOE_ENABLE_CUDA=OFF or nvcc not found)");
    b.notice = "this binary was built without CUDA: backend auto uses cpu";
#endif
  }
  b.compute = make_cpu_compute(emulate_dtype ? parse_dtype(model_dtype) : DType::f32);
  b.world = make_mpi_world_comm(*b.compute);
  return b;
}

int run_backend_selftest(const std::string& backend, std::ostream& out) {
  if (backend != "cuda") throw ConfigError("--backend", "selftest checks the cuda backend against cpu; got '" + backend + "'");
#ifdef MOE_HAVE_CUDA
  return run_cuda_selftest(out);
#else
  out << "selftest: this binary was built without the CUDA backend (MOE_ENABLE_CUDA=OFF or nvcc not found)\n";
  return 2;
#endif
}

}  // namespace moe
