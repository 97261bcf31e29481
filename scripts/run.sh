#!/usr/bin/env bash
# One command on a fresh Debian machine: install what is missing, build, and run the main demo on
# the CPU backend (16 ranks: baseline tp 8 x pp 2 vs proposed ep 16, verified against the reference).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
source scripts/env.sh
# Demo output goes to out/ (ignored by git); the committed results/ change only on purpose.
mkdir -p out
mpirun -np 16 --oversubscribe --bind-to none "$BUILD_DIR/moe-bench" run \
  --config configs/cpu-16rank.json --out out/cpu-16rank.json
