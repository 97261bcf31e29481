#!/usr/bin/env bash
# Benchmark of the runtime overlap on this machine (prints figures; not a pass/fail test). On
# configs/cpu-2rank-overlap.json at 2 ranks (no more ranks than cores), in one session:
#   - run every strategy (ep none | chunked | two_batch, tp_pp none | pipelined) with a trace, with
#     MPI progress by polling between kernel blocks (default) and again from a progress thread;
#   - time MPI_Alltoallv and the posted transfers on the byte matrix of one prefill dispatch;
#   - calibrate a hardware profile and simulate the same config with it.
# Then prints, from those files (scripts/overlap_report.py): prefill MoE time per layer and its ratio
# to overlap none, measured and predicted overlap efficiency, dispatch + combine against the raw
# all-to-all, and decode TPOT per mode.
#
# usage: scripts/bench-overlap.sh [build-dir] [config]      (default: build, configs/cpu-2rank-overlap.json)
# env:   MPIEXEC (default mpirun), OUT (default a temporary directory; keeps the JSON files)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-build}"
cfg="${2:-$here/configs/cpu-2rank-overlap.json}"
bin="$build/moe-bench"
[[ -x "$bin" ]] || { echo "bench-overlap: $bin not found (build first, or pass the build dir)" >&2; exit 2; }
out="${OUT:-$(mktemp -d)}"
mkdir -p "$out"
mpiexec="${MPIEXEC:-mpirun}"
export OPENBLAS_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1
if [[ "$(id -u)" == 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
python=/usr/bin/python3; [[ -x $python ]] || python=python3

read -r ranks rows hidden < <($python - "$cfg" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
ranks = c["cluster"]["nodes"] * c["cluster"]["gpus_per_node"]
w, m = c["workload"], c["model"]
print(ranks, w["batch_sequences"] // ranks * w["prompt_tokens"] * m["top_k"], m["hidden"])
PY
)
cores=$(nproc)
bind="--bind-to core"
if (( ranks > cores )); then
  echo "bench-overlap: $ranks ranks on $cores cores: OVERSUBSCRIBED, figures measure the scheduler" >&2
  bind="--oversubscribe --bind-to none"
fi
echo "== $(basename "$cfg" .json): $ranks ranks on $cores cores, load average $(cut -d' ' -f1 /proc/loadavg)"
# shellcheck disable=SC2086
"$mpiexec" $bind -np "$ranks" "$bin" run --config "$cfg" --no-verify --out "$out/measured.json" --trace "$out/trace.json" >/dev/null
# shellcheck disable=SC2086
MOE_CPU_PROGRESS=thread "$mpiexec" $bind -x MOE_CPU_PROGRESS -np "$ranks" "$bin" run --config "$cfg" --no-verify \
  --out "$out/measured-thread.json" >/dev/null
# shellcheck disable=SC2086
"$mpiexec" $bind -np "$ranks" "$bin" exchange --rows "$rows" --hidden "$hidden" > "$out/exchange.json"
# shellcheck disable=SC2086
"$mpiexec" $bind -np "$ranks" "$bin" calibrate --config "$cfg" --out "$out/hardware.json" >/dev/null
"$bin" simulate --config "$cfg" --hardware "$out/hardware.json" --backend cpu --out "$out/simulated.json" >/dev/null
$python "$here/scripts/overlap_report.py" "$out/measured.json" "$out/simulated.json" "$out/exchange.json" "$out/trace.json" \
  "$out/measured-thread.json"
echo "files in $out"
