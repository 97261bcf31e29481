#!/usr/bin/env bash
# place picks the strategy it plans for (by default not a round_robin one, which would be compared
# with round_robin itself; --strategy NAME; --load-profile FILE#strategy) and writes each layer's
# metrics into the plan file, which run --plan still reads.
set -uo pipefail
bin="$1"; src="$2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cfg="$src/configs/cpu-16rank-zipf.json"

"$bin" place --config "$cfg" --no-write > "$tmp/out" 2>&1 || { cat "$tmp/out"; fail "place"; }
grep -q "^algorithm: topology_aware (placement of strategy 'proposed')" "$tmp/out" || { cat "$tmp/out"; fail "default strategy"; }
"$bin" place --config "$cfg" --no-write --strategy ep-round-robin > "$tmp/out" 2>&1 || { cat "$tmp/out"; fail "--strategy"; }
grep -q "^algorithm: round_robin (placement of strategy 'ep-round-robin')" "$tmp/out" || { cat "$tmp/out"; fail "--strategy ep-round-robin"; }
"$bin" place --config "$cfg" --no-write --strategy baseline > "$tmp/out" 2>&1; rc=$?
[ "$rc" -eq 2 ] && grep -q "\-\-strategy: strategy 'baseline' is of kind tp_pp, not ep" "$tmp/out" || { cat "$tmp/out"; fail "--strategy baseline: exit $rc"; }

run="$src/results/cpu-16rank-zipf.json"
"$bin" place --config "$cfg" --no-write --load-profile "$run#ep-round-robin" > "$tmp/a" 2>&1 || { cat "$tmp/a"; fail "#ep-round-robin"; }
"$bin" place --config "$cfg" --no-write --load-profile "$run#baseline" > "$tmp/b" 2>&1 || { cat "$tmp/b"; fail "#baseline"; }
grep -q "^routing: results $run#ep-round-robin" "$tmp/a" || { cat "$tmp/a"; fail "routing line lacks the selector"; }
# Different strategies counted different loads: the per-layer tables differ.
! cmp -s <(grep -v "^routing\|search" "$tmp/a") <(grep -v "^routing\|search" "$tmp/b") || fail "the selector changed nothing"
"$bin" place --config "$cfg" --no-write --load-profile "$run#nope" > "$tmp/out" 2>&1; rc=$?
[ "$rc" -eq 2 ] && grep -q "no strategy named 'nope'" "$tmp/out" || { cat "$tmp/out"; fail "#nope: exit $rc"; }

# place --out: the plan file carries each layer's metrics (plan and round_robin) and the totals;
# the balance bounds where experts <= ranks (cpu-16rank-zipf: 16 experts on 16 ranks).
for c in cpu-4rank cpu-16rank-zipf; do
"$bin" place --config "$src/configs/$c.json" --out "$tmp/$c-plan.json" > "$tmp/out" 2>&1 || { cat "$tmp/out"; fail "place --out ($c)"; }
python3 - "$tmp/$c-plan.json" "$src/configs/$c.json" <<'PY' || fail "plan metrics ($c)"
import json, sys
p = json.load(open(sys.argv[1]))
bounded = json.load(open(sys.argv[2]))["model"]["experts"] <= p["num_ranks"]  # bounds need E <= G
layers = p["layers"]
assert layers and all("metrics" in l for l in layers), p.keys()
for l in layers:
    m = l["metrics"]
    for k in ("balancedness", "tokens_per_gpu", "intra_node_bytes", "inter_node_bytes", "max_inter_node_link_bytes",
              "busiest_nic", "max_intra_node_link_bytes", "busiest_port", "round_robin"):
        assert k in m, (k, m.keys())
    assert len(m["tokens_per_gpu"]) == p["num_ranks"] and 0 < m["balancedness"] <= 1
    assert ("balancedness_bound" in m) == bounded, m.keys()
    if bounded:
        assert m["balancedness"] <= m["balancedness_bound"]["one_expert_per_gpu"] + 1e-9
    assert m["intra_node_bytes"] > 0
t = p["metrics"]["all_layers"]
assert abs(t["min_balancedness"] - min(l["metrics"]["balancedness"] for l in layers)) < 1e-12
assert abs(t["intra_node_bytes"] - sum(l["metrics"]["intra_node_bytes"] for l in layers)) < 1e-6 * t["intra_node_bytes"]
PY
done
timeout 300 "${MPIEXEC:-mpirun}" -np 4 --oversubscribe --bind-to none "$bin" run --config "$src/configs/cpu-4rank.json" \
  --plan "$tmp/cpu-4rank-plan.json" --iterations 1 --quiet > "$tmp/out" 2>&1 || { cat "$tmp/out"; fail "run --plan with a plan carrying metrics"; }
grep -q "PASS" "$tmp/out" || { cat "$tmp/out"; fail "run --plan did not verify"; }
echo "place_plan: OK"
