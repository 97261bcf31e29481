#!/usr/bin/env bash
# compare end to end: the shipped results in every format, a measured/simulated pair of one config
# (prediction error), and refused inputs (exit 2 naming the file and the reason, nothing written).
set -uo pipefail
bin="$1"; src="$2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
source "$src/tests/cli/lib/expect.sh"

# Copies of the shipped results, read from an empty working directory: compare needs nothing else.
mkdir -p "$tmp/r" "$tmp/cwd"
cp "$src"/results/*.json "$tmp/r/"
files=("$tmp"/r/*.json)
expected_rows=$(python3 -c 'import json,sys; print(sum(len(json.load(open(f))["strategies"]) for f in sys.argv[1:]))' "${files[@]}")
[ "$expected_rows" -ge 8 ] || fail "shipped results have only $expected_rows strategies"

cd "$tmp/cwd"
expect 0 "TPOT pred err" -- "$bin" compare "${files[@]}"
# Header + one line per strategy before the blank line of the legend.
rows=$(awk 'NR>1 && NF==0 {exit} NR>1 {n++} END {print n}' "$tmp/out")
[ "$rows" -eq "$expected_rows" ] || { cat "$tmp/out"; fail "table has $rows rows, want $expected_rows"; }
grep -q "cpu-16rank-zipf .*ep-round-robin" "$tmp/out" || { cat "$tmp/out"; fail "table lacks the zipf ep-round-robin row"; }
grep -q "PASS" "$tmp/out" || fail "table lacks verification"
want=$(python3 -c 'import json,sys; o=[s for s in json.load(open(sys.argv[1]))["strategies"] if s["kind"]=="ep"][0]["overlap"]; print("%.2f/%.2f" % (o["decode_step"]["efficiency"], o["prefill"]["efficiency"]))' "$src/results/paper-16xh100.simulated.json")
grep -q "$want" "$tmp/out" || { cat "$tmp/out"; fail "table lacks the simulated overlap efficiency (decode/prefill) $want"; }

expect 0 "---:|" -- "$bin" compare "${files[@]}" --baseline baseline --format markdown
[ "$(grep -c '^| ' "$tmp/out")" -eq $((expected_rows + 1)) ] || { cat "$tmp/out"; fail "markdown row count"; }
# cpu-16rank-hot has no strategy named baseline: a note, its ratios empty.
grep -q "Note: .*cpu-16rank-hot.json: no strategy named 'baseline'" "$tmp/out" || { cat "$tmp/out"; fail "markdown lacks the missing-baseline note"; }

expect 0 "decode_tokens_per_s" -- "$bin" compare "${files[@]}" --format csv
[ "$(wc -l < "$tmp/out")" -eq $((expected_rows + 1)) ] || { cat "$tmp/out"; fail "csv line count"; }

# json: ratios agree with each results file's own comparison block.
"$bin" compare "${files[@]}" --format json --out "$tmp/c.json" 2> "$tmp/err" || { cat "$tmp/err"; fail "compare --format json --out"; }
python3 - "$tmp/c.json" "$expected_rows" "${files[@]}" <<'PY' || fail "json rows"
import json, sys
c = json.load(open(sys.argv[1])); want = int(sys.argv[2]); files = sys.argv[3:]
assert len(c["rows"]) == want, (len(c["rows"]), want)
for f in files:
    r = json.load(open(f))
    for cmp in r["comparison"]:
        row = next(x for x in c["rows"] if x["file"] == f and x["strategy"] == cmp["name"])
        assert abs(row["decode_tps_ratio"] - cmp["tps_ratio"]) < 1e-9 * cmp["tps_ratio"], (f, row, cmp)
        assert abs(row["prefill_tps_ratio"] - cmp["prefill_tps_ratio"]) < 1e-9 * cmp["prefill_tps_ratio"], (f, row, cmp)
ep = [x for x in c["rows"] if x["kind"] == "ep" and x["mode"] == "measured"]
assert ep and all(0 < x["gpu_balancedness"] <= 1 for x in ep), ep
sim = [x for x in c["rows"] if x["mode"] == "simulated"]
assert sim and all(x["overlap_decode_efficiency"] is not None for x in sim)
# Measured results carry the runtime's overlap block: an efficiency in [0, 1] on every row.
meas = [x for x in c["rows"] if x["mode"] == "measured"]
assert meas and all(0 <= x["overlap_decode_efficiency"] <= 1 and 0 <= x["overlap_prefill_efficiency"] <= 1 for x in meas), meas
PY

expect 0 "rows written" -- "$bin" compare "${files[@]}" --format html --out "$tmp/report.html"
grep -q "<svg" "$tmp/report.html" || fail "html lacks charts"
! grep -qE '<script|src=|https?://[^"]*\.(js|css)' "$tmp/report.html" || fail "html is not self-contained"

# A measured and a simulated document of one config: the prediction error on both rows.
"$bin" simulate --config "$src/configs/cpu-16rank.json" --out "$tmp/cpu-16rank.sim.json" > /dev/null || fail "simulate"
"$bin" compare "$tmp/r/cpu-16rank.json" "$tmp/cpu-16rank.sim.json" --format json > "$tmp/pair.json" || fail "compare pair"
python3 - "$tmp/pair.json" <<'PY' || fail "prediction error"
import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
assert len(rows) == 6, rows   # 3 strategies, measured and simulated
for r in rows:
    other = next(x for x in rows if x["strategy"] == r["strategy"] and x["mode"] != r["mode"])
    m, s = (r, other) if r["mode"] == "measured" else (other, r)
    want = (s["tpot_mean_ms"] - m["tpot_mean_ms"]) / m["tpot_mean_ms"]
    assert abs(r["tpot_prediction_error"] - want) < 1e-9 * max(1, abs(want)), (r, want)
    assert r["prediction_counterpart"] == other["file"]
PY

# Refused inputs: exit 2, the file and the reason, no output file.
python3 - "$tmp" "$tmp/r/cpu-16rank.json" <<'PY'
import json, sys
tmp, good = sys.argv[1], json.load(open(sys.argv[2]))
v2 = dict(good); v2["schema_version"] = 2; json.dump(v2, open(f"{tmp}/v2.json", "w"))
notool = dict(good); del notool["tool"]; json.dump(notool, open(f"{tmp}/notool.json", "w"))
broken = json.loads(json.dumps(good)); del broken["strategies"][1]["decode"]["tokens_per_s"]
json.dump(broken, open(f"{tmp}/broken.json", "w"))
json.dump({"schema_version": 1, "algorithm": "balanced", "num_ranks": 16, "layers": []}, open(f"{tmp}/plan.json", "w"))
open(f"{tmp}/notjson.json", "w").write("moe-bench results, honest\n")
PY
good="$tmp/r/cpu-16rank.json"
expect 2 "v2.json: schema_version 2 is not supported" -- "$bin" compare "$good" "$tmp/v2.json" --out "$tmp/x.html" --format html
[ ! -e "$tmp/x.html" ] || fail "a refused compare wrote its output"
expect 2 "notool.json: not a moe-bench results file" -- "$bin" compare "$tmp/notool.json"
expect 2 "broken.json: strategies\[1\].decode.tokens_per_s is missing" -- "$bin" compare "$good" "$tmp/broken.json"
expect 2 "plan.json: not a moe-bench results file (it looks like a placement plan" -- "$bin" compare "$tmp/plan.json"
expect 2 "cpu-16rank.json: not a moe-bench results file (it looks like a config" -- "$bin" compare "$src/configs/cpu-16rank.json"
expect 2 "notjson.json: not valid JSON" -- "$bin" compare "$tmp/notjson.json"
expect 2 "missing.json: cannot open results file" -- "$bin" compare "$tmp/missing.json"
expect 2 "no results file has a strategy named 'nope'" -- "$bin" compare "$good" --baseline nope
expect 2 "is a directory" -- "$bin" compare "$good" --out "$tmp"
expect 2 "cannot write" -- "$bin" compare "$good" --out "$tmp/no/such/dir/c.txt"
grep -c "moe-bench: error:" "$tmp/out" | grep -qx 1 || { cat "$tmp/out"; fail "error not printed exactly once"; }
echo "compare: OK"
