#!/usr/bin/env bash
# Installs the Debian packages moe-bench needs, if any are missing. CUDA (nvcc, cuBLAS, NCCL) is
# optional: when /usr/local/cuda is present the CUDA backend is built too.
#   scripts/install-deps.sh          build dependencies, plus matplotlib for scripts/plot_results.py
#   scripts/install-deps.sh --test   also chromium (HTML report render test) and a single-node Slurm
#                                    (munge, slurmctld, slurmd, slurm-client) for the Slurm test
# Optional packages that cannot be installed are reported and skipped (the tests needing them skip);
# the build dependencies are required. Nothing is downloaded when everything is present.
set -euo pipefail

required=(cmake g++ make git python3 libopenmpi-dev openmpi-bin libcli11-dev nlohmann-json3-dev catch2 libopenblas-dev)
optional=(python3-matplotlib python3-pil)
for arg in "$@"; do
  case "$arg" in
    --test) optional+=(chromium munge slurmctld slurmd slurm-client) ;;
    -*) echo "usage: $0 [--test] [extra required package...]" >&2; exit 2 ;;
    *) required+=("$arg") ;;   # extra packages a script needs (fuzz.sh: clang-14 libclang-rt-14-dev)
  esac
done

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing_required=(); missing_optional=()
for p in "${required[@]}"; do installed "$p" || missing_required+=("$p"); done
for p in "${optional[@]}"; do installed "$p" || missing_optional+=("$p"); done
if [ ${#missing_required[@]} -eq 0 ] && [ ${#missing_optional[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
apt_install() { DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@"; }
$SUDO apt-get update -qq || echo "moe-bench: apt-get update failed; trying the package lists already present" >&2
if [ ${#missing_required[@]} -gt 0 ]; then
  echo "moe-bench: installing ${missing_required[*]}"
  apt_install "${missing_required[@]}"
fi
if [ ${#missing_optional[@]} -gt 0 ]; then
  echo "moe-bench: installing (optional) ${missing_optional[*]}"
  if ! apt_install "${missing_optional[@]}"; then
    for p in "${missing_optional[@]}"; do
      apt_install "$p" || echo "moe-bench: optional package $p is not available; what needs it is skipped" >&2
    done
  fi
fi
