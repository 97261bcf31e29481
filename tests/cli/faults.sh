#!/usr/bin/env bash
# Failure handling on 4 ranks with test-only fault injection (MOE_FAULT): a hung rank ends the job
# within timeout + 10 s with a message naming the phase and the ranks waited for; a crash within
# 10 s; a throw prints its error once with the rank; SIGTERM ends every rank with rank 0 naming the
# strategy and phase. No case leaves a results file or a temporary file; --keep-partial writes
# "status": "failed" with the reason and the completed strategies.
set -uo pipefail
bin="$1"; src="$2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; [ -f "$tmp/out" ] && cat "$tmp/out"; exit 1; }

python3 - "$src" "$tmp" <<'PY'
import json, sys
src, tmp = sys.argv[1:]
c = json.load(open(f"{src}/configs/cpu-4rank.json"))
c["name"] = "faults"
c["model"].update({"layers": 2, "hidden": 64, "ffn_hidden": 128, "heads": 2, "head_dim": 16})
c["workload"].update({"batch_sequences": 8, "prompt_tokens": 8, "decode_steps": 4})
c["run"]["iterations"] = 1
json.dump(c, open(f"{tmp}/cfg.json", "w"))
c["run"]["iterations"] = 100000   # runs until interrupted
json.dump(c, open(f"{tmp}/long.json", "w"))
PY

# run_fault SPEC LIMIT_S [extra args...]: runs 4 ranks with MOE_FAULT=SPEC; sets rc and took_s.
run_fault() {
  local spec="$1" limit="$2"; shift 2
  local t0; t0=$(date +%s.%N)
  MOE_FAULT="$spec" timeout 120 "${MPIEXEC:-mpirun}" -np 4 --oversubscribe --bind-to none "$bin" run \
    --config "$tmp/cfg.json" --out "$tmp/r.json" "$@" > "$tmp/out" 2>&1
  rc=$?
  took_s=$(python3 -c "import sys; print(round($(date +%s.%N) - $t0, 1))")
  [ "$rc" -ne 124 ] || fail "$spec: hung (killed by timeout 120)"
  [ "$rc" -ne 0 ] || fail "$spec: exit 0"
  python3 -c "import sys; sys.exit(0 if $took_s <= $limit else 1)" || fail "$spec: took ${took_s} s (limit ${limit} s)"
  no_leftovers "$spec"
}
# Nothing at --out, no temporary file, no rank still running.
no_leftovers() {
  [ "${expect_out:-0}" = 1 ] || [ ! -e "$tmp/r.json" ] || fail "$1: a results file was written"
  ! ls "$tmp"/r.json.* > /dev/null 2>&1 || fail "$1: temporary file left: $(ls "$tmp"/r.json.*)"
  sleep 0.5
  ! pgrep -f -- "$tmp/" > /dev/null || fail "$1: a rank is still running: $(pgrep -af -- "$tmp/")"
}

# hang: rank 2 stops in dispatch at step 3; the others wait in the dispatch collectives.
run_fault "rank:2,phase:dispatch,step:3,action:hang" 15 --timeout-s 5
grep -Eq '^\[rank [013]\] timeout after 5 s in dispatch \(strategy proposed, layer [0-9]+, step 3, chunk (-|[0-9]+)\) waiting for ranks \[[0-9, ]*2[0-9, ]*\]' "$tmp/out" \
  || fail "hang: no timeout message naming dispatch, step 3 and rank 2"
echo "hang: ended in ${took_s} s (timeout 5 s), exit $rc"

# The timeout comes from run.timeout_s when --timeout-s is not given; a pp_transfer wait names its one peer.
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c['run']['timeout_s']=4; json.dump(c, open(sys.argv[1],'w'))" "$tmp/cfg.json"
run_fault "rank:0,phase:pp_transfer,step:1,action:hang" 14
grep -Eq '^\[rank [123]\] timeout after 4 s in (pp_transfer|tp_allreduce|barrier) \(strategy baseline, .*\) waiting for ranks \[' "$tmp/out" \
  || fail "hang in pp_transfer: no timeout message"
echo "hang (run.timeout_s): ended in ${took_s} s, exit $rc"

# crash: abort() on rank 1 in combine.
run_fault "rank:1,phase:combine,step:2,action:crash" 10
echo "crash: ended in ${took_s} s, exit $rc"

# throw: the error is printed once, with the rank.
run_fault "rank:3,phase:gate,step:1,layer:1,action:throw" 15
[ "$(grep -c 'injected fault' "$tmp/out")" -eq 1 ] || fail "throw: error not printed exactly once"
grep -q '^\[rank 3\] moe-bench: error: injected fault .* in gate (strategy baseline, layer 1, step 1' "$tmp/out" \
  || fail "throw: message lacks the rank or where"
echo "throw: ended in ${took_s} s, exit $rc"

# --keep-partial: rank 0 fails in the second strategy; the first is kept, with the reason.
expect_out=1 run_fault "rank:0,phase:dispatch,step:0,action:throw" 30 --keep-partial
[ -f "$tmp/r.json" ] || fail "keep-partial: no results file"
python3 - "$tmp/r.json" <<'PY' || fail "keep-partial: wrong partial results"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["status"] == "failed", r["status"]
assert "injected fault" in r["failure"]["reason"] and "[rank 0]" in r["failure"]["reason"], r["failure"]
assert r["failure"]["completed_strategies"] == ["baseline"], r["failure"]
assert [s["name"] for s in r["strategies"]] == ["baseline"]
assert r["strategies"][0]["verification"]["passed"]
PY
rm -f "$tmp/r.json"

# --keep-partial on a timeout: rank 0 waits for the hung rank 2, times out and keeps the baseline.
expect_out=1 run_fault "rank:2,phase:dispatch,step:1,action:hang" 15 --keep-partial --timeout-s 3
python3 - "$tmp/r.json" <<'PY' || fail "keep-partial after a timeout: wrong partial results"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["status"] == "failed", r["status"]
reason = r["failure"]["reason"]
assert reason.startswith("[rank 0] timeout after 3 s in dispatch (strategy proposed") and "waiting for ranks [1, 2, 3]" in reason, reason
assert r["failure"]["completed_strategies"] == ["baseline"], r["failure"]
PY
rm -f "$tmp/r.json"

# A malformed MOE_FAULT is bad input: exit 2, named, printed once.
MOE_FAULT="rank:1,phase:dispach,action:hang" timeout 120 "${MPIEXEC:-mpirun}" -np 4 --oversubscribe --bind-to none "$bin" run \
  --config "$tmp/cfg.json" > "$tmp/out" 2>&1
rc=$?
[ "$rc" -eq 2 ] || fail "bad MOE_FAULT: exit $rc (want 2)"
[ "$(grep -c "MOE_FAULT: unknown phase 'dispach'" "$tmp/out")" -eq 1 ] || fail "bad MOE_FAULT: message not printed once"

# SIGTERM (Slurm's time limit, or kill) to mpirun: every rank ends, rank 0 says where, nothing written.
interrupt() {  # interrupt SIGNAL [extra args...]
  local sig="$1"; shift
  "${MPIEXEC:-mpirun}" -np 4 --oversubscribe --bind-to none "$bin" run --config "$tmp/long.json" --out "$tmp/r.json" "$@" \
    > "$tmp/out" 2>&1 &
  local pid=$!
  sleep 4
  kill "-$sig" "$pid"
  local waited=0
  while kill -0 "$pid" 2> /dev/null && [ "$waited" -lt 30 ]; do sleep 1; waited=$((waited + 1)); done
  kill -0 "$pid" 2> /dev/null && { kill -KILL "$pid"; fail "$sig: mpirun still running 30 s after the signal"; }
  wait "$pid"; rc=$?
  [ "$rc" -ne 0 ] || fail "$sig: exit 0"
  grep -Eq "^moe-bench: interrupted by SIG(TERM|INT).* in [a-z_]+ \(strategy (baseline|proposed), " "$tmp/out" \
    || fail "$sig: rank 0 did not say which strategy and phase were interrupted"
}
interrupt TERM
no_leftovers "SIGTERM"
interrupt INT
no_leftovers "SIGINT"
interrupt TERM --keep-partial
expect_out=1 no_leftovers "SIGTERM --keep-partial"
python3 - "$tmp/r.json" <<'PY' || fail "SIGTERM --keep-partial: wrong partial results"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["status"] == "failed" and "interrupted by SIGTERM" in r["failure"]["reason"], r.get("failure")
assert r["failure"]["completed_strategies"] == [s["name"] for s in r["strategies"]]
PY
echo "faults: OK"
