#!/usr/bin/env bash
# The Slurm scripts on a real Slurm: a private single-node cluster from Debian's packages (munged,
# slurmctld, slurmd on their own socket, ports and state directory; the node claims 16 CPUs through
# SlurmdParameters=config_overrides and 16 GPUs whose device files are stand-ins). It submits
# moe-bench.sbatch with the CPU config at 4 tasks (--gpus-per-node=0, as on a CPU partition) and
# sweep.sh with the 16-rank config at 16 tasks (with a GPU request), waits, checks the results JSON
# and the job records, then stops the daemons. Exit 77 (skipped) when Slurm is not installed or its daemons cannot run here.
set -uo pipefail
bin="$1"; src="$2"
fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

for b in munged slurmctld slurmd sbatch squeue scontrol srun; do
  command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || skip "$b is not installed (scripts/install-deps.sh --test installs munge, slurmctld, slurmd, slurm-client)"
done
PATH="$PATH:/usr/sbin"

# A short path: munge's socket path must fit a sockaddr_un.
tmp=$(mktemp -d /tmp/moe-slurm.XXXXXX)
daemons_started=0
cleanup() {
  if [ "$daemons_started" -eq 1 ]; then
    scancel --quiet --full -u "$(id -un)" >/dev/null 2>&1 || true
    for p in slurmd slurmctld; do
      [ -f "$tmp/$p.pid" ] && kill "$(cat "$tmp/$p.pid")" 2>/dev/null
    done
    munged --stop --socket="$tmp/munge.sock" >/dev/null 2>&1 || true
    sleep 1
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
logs() { for f in "$tmp"/log/*.log; do echo "--- $f"; tail -15 "$f"; done; }

mkdir -p "$tmp/state" "$tmp/spool" "$tmp/log" "$tmp/submit" "$tmp/results"
head -c 1024 /dev/urandom > "$tmp/munge.key" && chmod 400 "$tmp/munge.key"
host=$(hostname -s)
port=$((20000 + RANDOM % 20000))
cat > "$tmp/slurm.conf" <<EOF
ClusterName=moebenchtest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$tmp/munge.sock
CredType=cred/munge
SlurmctldPort=$port
SlurmdPort=$((port + 1))
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MinJobAge=600
GresTypes=gpu
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=16 Boards=1 SocketsPerBoard=1 CoresPerSocket=16 ThreadsPerCore=1 RealMemory=1000 Gres=gpu:16 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$tmp/slurm.conf"

[ "$(id -u)" -eq 0 ] || skip "the private Slurm needs root (slurmd runs jobs as their users)"
# gres/gpu wants a character device per GPU: 16 stand-ins with /dev/null's numbers.
mkdir -p "$tmp/dev"
for i in $(seq 0 15); do
  mknod "$tmp/dev/gpu$i" c 1 3 2>/dev/null || skip "cannot create device nodes for the node's GPU GRES (mknod refused)"
done
echo "NodeName=$host Name=gpu File=$tmp/dev/gpu[0-15]" > "$tmp/gres.conf"
daemons_started=1
munged --force --socket="$tmp/munge.sock" --key-file="$tmp/munge.key" --log-file="$tmp/log/munged.log" \
  --pid-file="$tmp/munged.pid" --seed-file="$tmp/munged.seed" || { logs; skip "munged does not start in this environment"; }
slurmctld -f "$SLURM_CONF" || { logs; skip "slurmctld does not start in this environment"; }
slurmd -f "$SLURM_CONF" || { logs; skip "slurmd does not start in this environment"; }
for _ in $(seq 60); do
  state=$(sinfo -h -n "$host" -o %T 2>/dev/null)
  [ "$state" = idle ] && break
  sleep 1
done
[ "$state" = idle ] || { logs; skip "the node did not become idle (state '$state'): Slurm's daemons cannot run here"; }
srun --mpi=list 2>&1 | grep -q pmix || fail "this Slurm has no PMIx plugin: srun --mpi=pmix cannot work (use MOE_LAUNCHER=mpirun)"

# The job environment: the binary, where results go, and the CPU backend on oversubscribed cores.
export MOE_BENCH="$bin" MOE_RESULTS_DIR="$tmp/results"
export OPENBLAS_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1 OMPI_MCA_rmaps_base_oversubscribe=1
cd "$tmp/submit"

wait_job() {  # wait_job ID: until it leaves the queue (at most 10 minutes)
  for _ in $(seq 600); do
    [ -z "$(squeue -h -j "$1" 2>/dev/null)" ] && return 0
    sleep 1
  done
  scontrol show job "$1"; logs; fail "job $1 did not finish in 10 minutes"
}

# check_job ID CONFIG TASKS [LAUNCHER]: the job completed, wrote a verified results JSON of TASKS
# ranks and its environment, started by LAUNCHER (default srun --mpi=pmix).
check_job() {
  local id="$1" config="$2" tasks="$3" launcher="${4:-srun --mpi=pmix}" name
  name=$(basename "$config" .json)
  local record; record=$(scontrol show job "$id")
  echo "$record" | grep -q "JobState=COMPLETED" && echo "$record" | grep -q "ExitCode=0:0" \
    || { echo "$record"; cat "moe-bench-$id.out"; logs; fail "job $id did not complete"; }
  grep -q "moe-bench.sbatch: launcher $launcher" "moe-bench-$id.out" || { cat "moe-bench-$id.out"; fail "job $id did not use $launcher"; }
  local dir="$tmp/results/$id"
  [ -f "$dir/$name.json" ] || { ls -la "$dir"; cat "moe-bench-$id.out"; fail "job $id wrote no $name.json"; }
  python3 - "$dir/$name.json" "$tasks" <<'PY' || fail "results of job $id"
import json, sys
r = json.load(open(sys.argv[1])); tasks = int(sys.argv[2])
assert r["schema_version"] == 1 and r["context"]["mode"] == "measured", r["context"]
assert r["context"]["world_size"] == tasks and len(r["context"]["hosts"]) == tasks, r["context"]
assert "--iterations" in r["context"]["argv"], r["context"]["argv"]
assert r["config"]["run"]["iterations"] == 1
for s in r["strategies"]:
    assert s["verification"]["checked"] and s["verification"]["passed"], (s["name"], s["verification"])
    assert s["decode"]["tokens_per_s"] > 0, s["name"]
PY
  grep -qx "SLURM_JOB_ID=$id" "$dir/job.env" && grep -qx "SLURM_NTASKS=$tasks" "$dir/job.env" \
    || { cat "$dir/job.env"; fail "job $id: job.env lacks the job id or task count"; }
  cmp -s "$config" "$dir/config.json" || fail "job $id: config.json is not the config it ran"
  grep -q "JobId=$id" "$dir/job.txt" || fail "job $id: job.txt lacks scontrol's record"
}

# 4 tasks, no GPU request (a CPU partition), the template submitted directly.
id4=$(sbatch --parsable --nodes=1 --ntasks-per-node=4 --cpus-per-task=1 --gpus-per-node=0 \
        "$src/scripts/slurm/moe-bench.sbatch" "$src/configs/cpu-4rank.json" --iterations 1) || { logs; fail "sbatch (4 tasks)"; }
echo "submitted job $id4 (4 tasks)"
wait_job "$id4"
check_job "$id4" "$src/configs/cpu-4rank.json" 4

# The documented fallback: mpirun inside the allocation.
idm=$(MOE_LAUNCHER=mpirun OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
      sbatch --parsable --nodes=1 --ntasks-per-node=4 --cpus-per-task=1 --gpus-per-node=0 \
        "$src/scripts/slurm/moe-bench.sbatch" "$src/configs/cpu-4rank.json" --iterations 1) || { logs; fail "sbatch (mpirun)"; }
wait_job "$idm"
check_job "$idm" "$src/configs/cpu-4rank.json" 4 "mpirun -np 4"

# 16 tasks through sweep.sh on one node, requesting GPUs (--gpus-per-node=16 on the stand-in GRES).
"$src/scripts/slurm/sweep.sh" --one-node --wait "$src/configs/cpu-16rank.json" -- --iterations 1 > sweep.out 2>&1 \
  || { cat sweep.out; cat moe-bench-*.out; logs; fail "sweep.sh"; }
id16=$(awk 'NR==1 {print $1}' sweep.out)
grep -q "^$id16 $src/configs/cpu-16rank.json\$" sweep.out || { cat sweep.out; fail "sweep.sh did not print the job id and config"; }
check_job "$id16" "$src/configs/cpu-16rank.json" 16
grep -q "GPUs\?=16\|gres/gpu=16\|gpu:16" "$tmp/results/$id16/job.txt" || { cat "$tmp/results/$id16/job.txt"; fail "job $id16 did not get its GPU request"; }
# sweep.sh --wait ran compare over the job's results: one row per strategy.
grep -q "cpu-16rank  *measured  *cpu  *16  *proposed" sweep.out || { cat sweep.out; fail "sweep.sh --wait did not compare the results"; }
echo "slurm: OK (jobs $id4, $idm and $id16)"
