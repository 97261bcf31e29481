#!/usr/bin/env bash
# Configures and builds moe-bench (CUDA backend included when nvcc is found) into $BUILD_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release ${MOE_CMAKE_ARGS:-}
cmake --build "$BUILD_DIR" -j "$(nproc)"
