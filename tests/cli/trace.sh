#!/usr/bin/env bash
# End to end through the CLI: `run --trace` on a small copy of configs/cpu-2rank-overlap.json writes a
# Chrome trace (a process per rank, a thread per stream, X events with layer, part, step and bytes)
# next to results with the overlap block; an unwritable --trace path is rejected before running.
set -euo pipefail
bin="$1"; src="$2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 - "$src/configs/cpu-2rank-overlap.json" "$tmp/cfg.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["model"]["hidden"] = 128
c["workload"]["prompt_tokens"] = 16
c["workload"]["decode_steps"] = 2
c["run"]["iterations"] = 1
json.dump(c, open(sys.argv[2], "w"))
PY
run() { "${MPIEXEC:-mpirun}" -np 2 --oversubscribe --bind-to none "$bin" run --config "$tmp/cfg.json" "$@"; }
run --out "$tmp/results.json" --trace "$tmp/trace.json" > "$tmp/stdout.txt"
grep -q "trace written to" "$tmp/stdout.txt"
grep -q "overlap p/d" "$tmp/stdout.txt"
python3 - "$tmp" <<'PY'
import json, os, sys
tmp = sys.argv[1]
r = json.load(open(os.path.join(tmp, "results.json")))
t = json.load(open(os.path.join(tmp, "trace.json")))
names = [s["name"] for s in r["strategies"]]
modes = {s["name"]: s["overlap"]["mode"] for s in r["strategies"]}
assert modes["ep-chunked"] == "chunked" and modes["pp2-pipelined"] == "pipelined", modes
for s in r["strategies"]:
    for step in ("prefill", "decode_step"):
        o = s["overlap"][step]
        assert 0 <= o["exposed_comm_ms"] <= o["comm_ms"] + 1e-9 and 0 <= o["efficiency"] <= 1, (s["name"], o)
    assert s["overlap"]["prefill"]["comm_ms"] > 0, s["name"]   # every strategy of this config communicates
events = t["traceEvents"]
meta = [e for e in events if e["ph"] == "M"]
procs = {e["pid"]: e["args"]["name"] for e in meta if e["name"] == "process_name"}
assert procs == {0: "rank 0 (node 0)", 1: "rank 1 (node 0)"}, procs
threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in meta if e["name"] == "thread_name"}
assert set(threads.values()) == {"compute", "send", "recv"}, threads
xs = [e for e in events if e["ph"] == "X"]
assert xs and all(k in e["args"] for e in xs for k in ("strategy", "layer", "part", "step", "bytes"))
assert {e["args"]["strategy"] for e in xs} == set(names)
steps = {e["args"]["step"] for e in xs}
assert steps == {0, 1, 2}, steps          # prefill and the two decode steps
stages = {e["name"] for e in xs if e["args"]["strategy"] == "ep-chunked"}
assert {"attention", "gate", "counts", "pack", "dispatch", "experts", "combine", "unpack"} <= stages, stages
stages = {e["name"] for e in xs if e["args"]["strategy"] == "pp2-pipelined"}
assert {"pp_recv", "pp_send", "moe_local"} <= stages, stages
assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in xs)
print("trace: results overlap block and Chrome trace OK")
PY
# An unwritable trace path fails at once, with exit 2 and the option named.
set +e
run --trace "$tmp/no/such/dir/trace.json" > "$tmp/bad.txt" 2>&1
rc=$?
set -e
[[ $rc -eq 2 ]] || { echo "expected exit 2 for an unwritable --trace, got $rc"; cat "$tmp/bad.txt"; exit 1; }
grep -q -- "--trace" "$tmp/bad.txt"
