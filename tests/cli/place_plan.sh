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
# run --plan says so: on the console (which plan, which algorithm replaced the config's) and in the
# results (layout.plan_file); predicted_from_plan uses and names the routing the plan was made for.
python3 - "$src/configs/cpu-4rank.json" "$tmp/zipf4.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["workload"]["routing"] = "zipf:1.2"; c["strategies"][1]["placement"] = "round_robin"
json.dump(c, open(sys.argv[2], "w"))
PY
"$bin" place --config "$tmp/zipf4.json" --algorithm balanced --routing hot:0.5 --out "$tmp/zipf4-plan.json" > "$tmp/out" 2>&1 \
  || { cat "$tmp/out"; fail "place zipf4"; }
timeout 300 "${MPIEXEC:-mpirun}" -np 4 --oversubscribe --bind-to none "$bin" run --config "$tmp/zipf4.json" \
  --plan "$tmp/zipf4-plan.json" --iterations 1 --quiet --out "$tmp/zipf4.json.out" > "$tmp/out" 2>&1 \
  || { cat "$tmp/out"; fail "run --plan with a plan carrying metrics"; }
grep -q "PASS" "$tmp/out" || { cat "$tmp/out"; fail "run --plan did not verify"; }
grep -qF "moe-bench: strategy 'proposed' runs with the balanced placement of plan '$tmp/zipf4-plan.json' (the config says round_robin)" \
  "$tmp/out" || { cat "$tmp/out"; fail "run --plan does not say which plan replaced the placement"; }
grep -qE "^  proposed +placement balanced from plan $tmp/zipf4-plan.json" "$tmp/out" || { cat "$tmp/out"; fail "table lacks the placement"; }
python3 - "$tmp/zipf4.json.out" "$tmp/zipf4-plan.json" <<'PY' || fail "results of run --plan"
import json, sys
r = json.load(open(sys.argv[1])); ep = r["strategies"][1]
assert ep["layout"]["plan_file"] == sys.argv[2], ep["layout"]
assert ep["layout"]["placement"] == "balanced", ep["layout"]["placement"]
# The prediction is for the routing the plan was made for (--routing hot:0.5), not the config's zipf.
assert ep["traffic"]["predicted_from_plan"]["routing"] == "hot:0.5 (the plan's load_profile)", ep["traffic"]["predicted_from_plan"]
plan = json.load(open(sys.argv[2]))
assert abs(ep["traffic"]["predicted_from_plan"]["inter_node_bytes"] - plan["metrics"]["all_layers"]["inter_node_bytes"]) \
    <= 1e-6 * max(1, plan["metrics"]["all_layers"]["inter_node_bytes"]), (ep["traffic"]["predicted_from_plan"], plan["metrics"])
assert "plan_file" not in r["strategies"][0]["layout"]
PY
# ep with expert_tp > 1: place plans whole experts on the expert-TP groups (num_ranks counts groups,
# the file says expert_tp), its metrics are over ranks (every row to each member's shard), and run
# --plan applies it to the strategy's shards; a plan for another expert_tp is refused by name.
python3 - "$src/configs/cpu-4rank.json" "$tmp/hyb4.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["workload"]["routing"] = "zipf:1.2"
c["strategies"] = [{"name": "hybrid", "kind": "ep", "ep": 2, "expert_tp": 2, "placement": "round_robin"},
                   {"name": "flat", "kind": "ep", "ep": 4, "placement": "round_robin"}]
json.dump(c, open(sys.argv[2], "w"))
PY
"$bin" place --config "$tmp/hyb4.json" --strategy hybrid --algorithm balanced --out "$tmp/hyb4-plan.json" > "$tmp/out" 2>&1 \
  || { cat "$tmp/out"; fail "place --strategy hybrid"; }
grep -q "^expert_tp 2: whole experts on 2 expert-TP groups of 2 ranks" "$tmp/out" || { cat "$tmp/out"; fail "place: no expert-TP line"; }
grep -q "experts -> expert-TP groups: " "$tmp/out" || { cat "$tmp/out"; fail "place: no group map"; }
python3 - "$tmp/hyb4-plan.json" <<'PY' || fail "hybrid plan file"
import json, sys
p = json.load(open(sys.argv[1]))
assert p["num_ranks"] == 2 and p["expert_tp"] == 2, (p["num_ranks"], p.get("expert_tp"))
for l in p["layers"]:
    assert sorted(e for slot in l["slots"] for e in slot) == list(range(len(l["replicas"]))), l
    t = l["metrics"]["tokens_per_gpu"]
    assert len(t) == 4 and t[0] == t[1] and t[2] == t[3], t   # a group's ranks carry equal loads
PY
timeout 300 "${MPIEXEC:-mpirun}" -np 4 --oversubscribe --bind-to none "$bin" run --config "$tmp/hyb4.json" \
  --plan "hybrid=$tmp/hyb4-plan.json" --iterations 1 --quiet --out "$tmp/hyb4.out.json" > "$tmp/out" 2>&1 \
  || { cat "$tmp/out"; fail "run --plan on expert_tp 2"; }
[ "$(grep -c PASS "$tmp/out")" -eq 2 ] || { cat "$tmp/out"; fail "run --plan on expert_tp 2 did not verify"; }
python3 - "$tmp/hyb4.out.json" "$tmp/hyb4-plan.json" <<'PY' || fail "results of run --plan on expert_tp 2"
import json, sys
r = json.load(open(sys.argv[1])); plan = json.load(open(sys.argv[2]))
h = r["strategies"][0]
assert h["layout"]["placement"] == "balanced" and h["layout"]["plan_file"] == sys.argv[2], h["layout"]
for l, layer in enumerate(plan["layers"]):   # rank g*2+m holds shard m of group g's experts
    for rank in range(4):
        assert sorted(h["layout"]["experts_of_rank"][l][rank]) == sorted(layer["slots"][rank // 2]), (l, rank)
assert abs(h["efficiency"]["flops_counter_vs_cost_model"] - 1) < 1e-9, h["efficiency"]["flops_counter_vs_cost_model"]
PY
timeout 300 "${MPIEXEC:-mpirun}" -np 4 --oversubscribe --bind-to none "$bin" run --config "$tmp/hyb4.json" \
  --plan "flat=$tmp/hyb4-plan.json" --iterations 1 --quiet --out "$tmp/x.json" > "$tmp/out" 2>&1; rc=$?
[ "$rc" -eq 2 ] && grep -q "plan '$tmp/hyb4-plan.json' is for expert_tp = 2, strategy 'flat' has expert_tp = 1" "$tmp/out" \
  || { cat "$tmp/out"; fail "a group plan on an expert_tp 1 strategy: exit $rc"; }
[ ! -e "$tmp/x.json" ] || fail "a refused plan wrote results"
echo "place_plan: OK"
