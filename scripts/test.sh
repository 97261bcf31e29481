#!/usr/bin/env bash
# One command on a fresh Debian machine: install what is missing, build (with the CUDA backend when
# nvcc is present), and run every test through ctest. Exits non-zero on any failure.
#   scripts/test.sh              the normal build (build/) and every test
#   scripts/test.sh --sanitize   AddressSanitizer + UndefinedBehaviorSanitizer build (build-sanitize/,
#                                CPU backend) running the unit, MPI and CLI tests; Open MPI's own
#                                leaks are suppressed by tests/sanitize/lsan.supp
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
if [ "${1:-}" = "--sanitize" ]; then
  export BUILD_DIR="${BUILD_DIR:-build-sanitize}"
  export MOE_CMAKE_ARGS="-DMOE_SANITIZE=ON -DMOE_ENABLE_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo ${MOE_CMAKE_ARGS:-}"
  export ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1"
  # The slow unwinder follows Open MPI's frames (built without frame pointers), and components stay
  # loaded so their allocations keep a module name: both needed for the suppressions to match.
  export LSAN_OPTIONS="suppressions=$PWD/tests/sanitize/lsan.supp:print_suppressions=0:fast_unwind_on_malloc=0"
  export OMPI_MCA_mca_base_component_disable_dlclose=1
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  scripts/build.sh
  source scripts/env.sh
  cd "$BUILD_DIR"
  # Not cli_faults: its limits are seconds of wall time, which the sanitizers stretch.
  ctest --output-on-failure --timeout 1800 -E '^cli_faults$'
  exit
fi
scripts/build.sh
source scripts/env.sh
cd "$BUILD_DIR"
ctest --output-on-failure --timeout 900
