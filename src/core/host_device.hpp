// MOE_HD marks functions compiled for both the host and the device (nvcc), so a rule written once
// runs in the CUDA kernels and in the CPU backend and its unit tests.
#pragma once
#ifdef __CUDACC__
#define MOE_HD __host__ __device__
#else
#define MOE_HD
#endif
