// Self-test of the CUDA backend against the CPU backend: every kernel and collective, in fp32,
// fp16 and bf16, on small random shapes. Collective over MPI_COMM_WORLD (run under mpirun).
#pragma once
#include <ostream>

namespace moe {

// Rank 0 prints one line per item, "PASS|FAIL <dtype>/<name> max_rel_err=<e>" (error is the max over
// ranks of max|cuda - cpu| / max|cpu|); a rank whose item throws prints "[rank r] <item>: <what>".
// Returns 0 when everything passed, 1 on any failure, and 2 after printing
// "selftest: no CUDA device: <reason>" when some rank has no usable GPU. Same value on all ranks.
int run_cuda_selftest(std::ostream& out);

}  // namespace moe
