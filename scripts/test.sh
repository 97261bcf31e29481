#!/usr/bin/env bash
# One command on a fresh Debian machine: install what is missing, build (with the CUDA backend when
# nvcc is present), and run every test through ctest. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
scripts/build.sh
source scripts/env.sh
cd "$BUILD_DIR"
ctest --output-on-failure --timeout 900
