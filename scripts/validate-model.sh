#!/usr/bin/env bash
# Validates the performance model on this machine: for every configs/cpu-*.json, calibrate a hardware
# profile under mpirun (same rank count), simulate with it, run the CPU backend, and print predicted vs
# measured per strategy and phase with the error (scripts/compare_predicted.py). Configs with no
# more ranks than cores must predict every step time within 15%; oversubscribed configs (more ranks
# than cores: the figures measure the scheduler) are reported apart and do not fail the script.
#
# usage: scripts/validate-model.sh [build-dir] [config...]     (default build dir: build)
# env:   MPIEXEC (default mpirun), OUT (default a temporary directory; keeps the JSON files)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-build}"
shift || true
bin="$build/moe-bench"
[[ -x "$bin" ]] || { echo "validate-model: $bin not found (build first, or pass the build dir)" >&2; exit 2; }
configs=("$@")
[[ ${#configs[@]} -gt 0 ]] || configs=("$here"/configs/cpu-*.json)
out="${OUT:-$(mktemp -d)}"
mkdir -p "$out"
mpiexec="${MPIEXEC:-mpirun}"
export OPENBLAS_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1
if [[ "$(id -u)" == 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
python=/usr/bin/python3; [[ -x $python ]] || python=python3

status=0
summary=()
for cfg in "${configs[@]}"; do
  name="$(basename "$cfg" .json)"
  ranks="$($python -c 'import json,sys; c=json.load(open(sys.argv[1]))["cluster"]; print(c["nodes"]*c["gpus_per_node"])' "$cfg")"
  oversubscribed=$(( ranks > $(nproc) ))
  label=""; (( oversubscribed )) && label=" OVERSUBSCRIBED"
  echo "== $name: $ranks ranks ($(nproc) cores)$label, load average $(cut -d' ' -f1 /proc/loadavg) =="
  # Other work on the machine between calibrate and run changes the measurement, not the model.
  "$mpiexec" --oversubscribe --bind-to none -np "$ranks" "$bin" calibrate --config "$cfg" --out "$out/$name.hardware.json" >/dev/null
  "$bin" simulate --config "$cfg" --hardware "$out/$name.hardware.json" --out "$out/$name.simulated.json" >/dev/null
  "$mpiexec" --oversubscribe --bind-to none -np "$ranks" "$bin" run --config "$cfg" --no-verify --out "$out/$name.measured.json" >/dev/null
  $python "$here/scripts/compare_predicted.py" "$out/$name.simulated.json" "$out/$name.measured.json" | tee "$out/$name.compare.txt"
  worst="$(sed -n 's/^worst step-time error: \([0-9.]*\)%/\1/p' "$out/$name.compare.txt")"
  if (( oversubscribed )); then
    echo "-> $name: worst step-time error $worst% (oversubscribed: reported, not checked)"
    summary+=("oversubscribed  $name: $worst%")
  elif $python -c "import sys; sys.exit(0 if float(sys.argv[1]) <= 15 else 1)" "$worst"; then
    echo "-> $name: step times within 15%"
    summary+=("within cores    $name: $worst%")
  else
    echo "-> $name: step-time error $worst% exceeds 15%"; status=1
    summary+=("within cores    $name: $worst% (exceeds 15%)")
  fi
  echo
done
echo "worst step-time error per config:"
printf '  %s\n' "${summary[@]}"
echo "files in $out"
exit $status
