# CUDA backend build (cuBLAS + NCCL + CUDA streams): included by the top-level CMakeLists when nvcc
# is found. Builds the static library moe_cuda from src/backend/cuda and sets MOE_HAVE_CUDA ON,
# or leaves it OFF with a warning when NCCL is missing.

# CUDA 13 no longer compiles for pre-Turing GPUs, and CMake's own default may be older: default to
# Hopper (H100). Override with -DCMAKE_CUDA_ARCHITECTURES="80;90" etc.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR "${CMAKE_CUDA_ARCHITECTURES}" STREQUAL "")
  set(CMAKE_CUDA_ARCHITECTURES 90)
endif()
# One CUDA runtime per process: CMake's default for CUDA code is the static cudart, while cuBLAS and
# NCCL use the shared one (CUDA::cudart). Two runtimes would not share devices, streams or errors.
if(NOT DEFINED CMAKE_CUDA_RUNTIME_LIBRARY)
  set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)
endif()
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
find_package(CUDAToolkit REQUIRED)

# NCCL ships no CMake config: look in NCCL_HOME / NCCL_ROOT (variable or environment), then the
# CUDA toolkit, then the system.
set(MOE_NCCL_HINTS ${NCCL_HOME} ${NCCL_ROOT} $ENV{NCCL_HOME} $ENV{NCCL_ROOT} ${CUDAToolkit_LIBRARY_ROOT}
    ${CUDAToolkit_TARGET_DIR} /usr/local/cuda)
find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${MOE_NCCL_HINTS} ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES include)
find_library(NCCL_LIBRARY NAMES nccl HINTS ${MOE_NCCL_HINTS} ${CUDAToolkit_LIBRARY_DIR}
             PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu)

if(NOT NCCL_INCLUDE_DIR OR NOT NCCL_LIBRARY)
  message(WARNING "moe-bench: NCCL not found (set NCCL_HOME); building without the CUDA backend")
else()
  message(STATUS "moe-bench: CUDA ${CUDAToolkit_VERSION} for sm ${CMAKE_CUDA_ARCHITECTURES}, NCCL ${NCCL_LIBRARY}")
  file(GLOB MOE_CUDA_SOURCES CONFIGURE_DEPENDS
       ${CMAKE_CURRENT_SOURCE_DIR}/src/backend/cuda/*.cu
       ${CMAKE_CURRENT_SOURCE_DIR}/src/backend/cuda/*.cpp)
  add_library(moe_cuda STATIC ${MOE_CUDA_SOURCES})
  target_include_directories(moe_cuda PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_include_directories(moe_cuda SYSTEM PUBLIC ${NCCL_INCLUDE_DIR})
  target_link_libraries(moe_cuda PUBLIC CUDA::cudart CUDA::cublas ${NCCL_LIBRARY} MPI::MPI_CXX)
  # moe_cuda uses moe_core (errors, dtypes, the CPU backend for the self-test) and moe_core calls
  # into moe_cuda (the backend factory): a cycle CMake resolves for static libraries by repeating
  # them on the link line. LINK_ONLY keeps moe_core's compile flags out of the nvcc command lines.
  target_link_libraries(moe_cuda INTERFACE $<LINK_ONLY:moe_core>)
  if(TARGET CUDA::nvtx3)  # header-only NVTX 3 (CUDA >= 10); ranges are no-ops without a profiler
    target_link_libraries(moe_cuda PRIVATE CUDA::nvtx3)
  endif()
  set_target_properties(moe_cuda PROPERTIES POSITION_INDEPENDENT_CODE ON CUDA_SEPARABLE_COMPILATION OFF
                                            CUDA_RUNTIME_LIBRARY Shared)
  target_compile_options(moe_cuda PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>)
  set(MOE_HAVE_CUDA ON)
endif()
