#!/usr/bin/env bash
# Submits scripts/slurm/moe-bench.sbatch once per config and prints the job ids; each job's tasks
# come from its config (cluster.nodes x cluster.gpus_per_node).
#   scripts/slurm/sweep.sh [--one-node] [--no-gpus] [--wait] CONFIG.json... [-- run options...]
#     --one-node  all ranks of a config on one node (CPU backend on a single machine)
#     --no-gpus   request no GPUs (CPU partitions without GRES)
#     --wait      wait for the jobs, then run `moe-bench compare` over their results (exit 1 when a
#                 job wrote none)
# Extra sbatch options: SWEEP_SBATCH_ARGS="--partition=gpu --account=x". Results land in
# ${MOE_RESULTS_DIR:-results}/<job id>/ (see moe-bench.sbatch). Afterwards:
#   build/moe-bench compare results/<id1>/*.json results/<id2>/*.json ...
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
one_node=0; no_gpus=0; wait_jobs=0; configs=(); run_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --one-node) one_node=1 ;;
    --no-gpus) no_gpus=1 ;;
    --wait) wait_jobs=1 ;;
    --) shift; run_args=("$@"); break ;;
    -*) echo "sweep.sh: unknown option $1" >&2; exit 2 ;;
    *) configs+=("$1") ;;
  esac
  shift
done
[ ${#configs[@]} -gt 0 ] || { echo "usage: $0 [--one-node] [--no-gpus] [--wait] CONFIG.json... [-- run options]" >&2; exit 2; }

# "nodes gpus_per_node" of a config (python3 only reads the JSON).
shape() {
  python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["cluster"]; print(c["nodes"], c["gpus_per_node"])' "$1" \
    || { echo "sweep.sh: cannot read cluster.nodes / gpus_per_node from $1" >&2; exit 2; }
}

jobs=()
for config in "${configs[@]}"; do
  read -r nodes per_node < <(shape "$config")
  if [ "$one_node" -eq 1 ]; then
    alloc=(--nodes=1 --ntasks-per-node=$((nodes * per_node)) --cpus-per-task=1)
    gpus=$((nodes * per_node))
  else
    alloc=(--nodes="$nodes" --ntasks-per-node="$per_node")
    gpus=$per_node
  fi
  [ "$no_gpus" -eq 0 ] || gpus=0
  # shellcheck disable=SC2086
  id=$(sbatch --parsable ${SWEEP_SBATCH_ARGS:-} "${alloc[@]}" --gpus-per-node="$gpus" \
         "$here/moe-bench.sbatch" "$config" "${run_args[@]}")
  id="${id%%;*}"
  jobs+=("$id")
  echo "$id $config"
done

[ "$wait_jobs" -eq 1 ] || exit 0
while [ -n "$(squeue -h -j "$(IFS=,; echo "${jobs[*]}")" 2>/dev/null)" ]; do sleep 2; done
files=(); failed=0
for id in "${jobs[@]}"; do
  found=0
  for f in "${MOE_RESULTS_DIR:-results}/$id"/*.json; do
    [ -f "$f" ] && [ "$(basename "$f")" != config.json ] || continue
    files+=("$f"); found=1
  done
  [ "$found" -eq 1 ] || { echo "sweep.sh: job $id wrote no results (see its moe-bench-$id.out)" >&2; failed=1; }
done
[ ${#files[@]} -gt 0 ] || exit 1
"${MOE_BENCH:-build/moe-bench}" compare "${files[@]}" || exit $?
exit $failed
