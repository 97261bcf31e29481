#!/usr/bin/env bash
# End to end through the CLI on 4 ranks (2 nodes x 2): a skewed run records its routing trace and
# counted load; `place --load-profile` plans from that run and `run --plan` uses the plan; a second
# config replays the trace (`workload.routing: trace:FILE#strategy`) and routes every token alike.
# Bad plan and trace inputs exit 2 with the option or JSON path named.
set -euo pipefail
bin="$1"; src="$2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mpi() { "${MPIEXEC:-mpirun}" -np 4 --oversubscribe --bind-to none "$bin" "$@"; }

python3 - "$src" "$tmp" <<'PY'
import json, sys
src, tmp = sys.argv[1:]
c = json.load(open(f"{src}/configs/cpu-4rank.json"))
c["name"] = "plan-trace"
c["model"].update({"layers": 2, "hidden": 64, "ffn_hidden": 128, "heads": 2, "head_dim": 16})
c["workload"].update({"batch_sequences": 8, "prompt_tokens": 8, "decode_steps": 3, "routing": "zipf:1.2,local:0.7"})
c["cluster"].update({"nodes": 2, "gpus_per_node": 2})
c["strategies"] = [{"name": "baseline", "kind": "tp_pp", "tp": 2, "pp": 2, "microbatches": 2},
                   {"name": "proposed", "kind": "ep", "ep": 4, "placement": "topology_aware"}]
c["run"]["iterations"] = 1
json.dump(c, open(f"{tmp}/skewed.json", "w"))
c["workload"]["routing"] = f"trace:{tmp}/first.json#proposed"
json.dump(c, open(f"{tmp}/replay.json", "w"))
PY

mpi run --config "$tmp/skewed.json" --out "$tmp/first.json" > /dev/null
"$bin" place --config "$tmp/skewed.json" --load-profile "$tmp/first.json" --out "$tmp/plan.json" > "$tmp/place.txt"
mpi run --config "$tmp/skewed.json" --plan "proposed=$tmp/plan.json" --out "$tmp/planned.json" > /dev/null
mpi run --config "$tmp/replay.json" --out "$tmp/replayed.json" > /dev/null

python3 - "$tmp" <<'PY'
import json, sys
tmp = sys.argv[1]
first, planned, replayed = (json.load(open(f"{tmp}/{n}.json")) for n in ("first", "planned", "replayed"))
plan = json.load(open(f"{tmp}/plan.json"))
for r in (first, planned, replayed):
    for s in r["strategies"]:
        assert s["verification"]["passed"], (s["name"], s["verification"])
        assert s["routing"]["choices_match_reference"], s["name"]
digest = first["strategies"][1]["routing"]["trace_digest"]
assert first["strategies"][0]["routing"]["trace_digest"] == digest, "tp_pp and ep route alike"
for s in replayed["strategies"]:
    assert s["routing"]["source"] == "trace replay" and s["routing"]["trace_digest"] == digest, s["routing"]
ep = planned["strategies"][1]
assert ep["layout"]["experts_of_rank"] == [layer["slots"] for layer in plan["layers"]], "run --plan uses the plan"
assert ep["traffic"]["predicted_from_counted_routing"]["inter_node_bytes"] == ep["traffic"]["inter_node_bytes"]
layers = first["strategies"][1]["load"]["layers"]
assert all(len(l["tokens_per_source_expert"]) == 4 for l in layers)
print("plan_and_trace: plan, trace record and replay OK")
PY

# Errors: exit 2, message names the option / path, printed once.
expect_error() {  # expected-needle command...
  local needle="$1"; shift
  set +e; "$@" > "$tmp/out.txt" 2> "$tmp/err.txt"; local rc=$?; set -e
  [ "$rc" -eq 2 ] || { echo "expected exit 2, got $rc: $*"; cat "$tmp/err.txt"; exit 1; }
  grep -q -- "$needle" "$tmp/err.txt" || { echo "missing '$needle' in:"; cat "$tmp/err.txt"; exit 1; }
  [ "$(grep -c -- "$needle" "$tmp/err.txt")" -eq 1 ] || { echo "error printed more than once"; cat "$tmp/err.txt"; exit 1; }
}
expect_error "no ep strategy named 'nope'" mpi run --config "$tmp/skewed.json" --plan "nope=$tmp/plan.json"
expect_error "cannot open plan file" mpi run --config "$tmp/skewed.json" --plan "$tmp/missing.json"
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c['workload']['routing']='trace:'+sys.argv[2]; json.dump(c, open(sys.argv[3],'w'))" \
  "$tmp/replay.json" "$tmp/plan.json" "$tmp/bad-trace.json"
expect_error "strategies" mpi run --config "$tmp/bad-trace.json"
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c['workload']['decode_steps']=5; json.dump(c, open(sys.argv[2],'w'))" \
  "$tmp/replay.json" "$tmp/long.json"
expect_error "workload.routing: the trace has 4 steps but the workload needs 1 prefill + 5 decode steps" mpi run --config "$tmp/long.json"
echo "plan_and_trace: errors OK"
