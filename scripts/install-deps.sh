#!/usr/bin/env bash
# Installs the Debian packages moe-bench needs, if any are missing. CUDA (nvcc, cuBLAS, NCCL) is
# optional: when /usr/local/cuda is present the CUDA backend is built too.
set -euo pipefail

packages=(cmake g++ make git python3 libopenmpi-dev openmpi-bin libcli11-dev nlohmann-json3-dev catch2 libopenblas-dev)
packages+=("$@")   # extra packages a script needs (fuzz.sh: clang-14 libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "moe-bench: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
