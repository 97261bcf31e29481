#!/usr/bin/env bash
# scripts/plot_results.py on the shipped results and a sample trace: every chart is written and
# shows a picture (pixel checks, not just file size); the committed results/plots cover the shipped
# results; bad inputs exit 2 naming the file. Exit 77 (skipped) only without Debian's matplotlib.
set -uo pipefail
bin="$1"; src="$2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
py=/usr/bin/python3
$py -c "import matplotlib" 2>/dev/null || { echo "SKIP: python3-matplotlib is not installed (scripts/install-deps.sh installs it)"; exit 77; }

"$py" "$src/scripts/plot_results.py" "$src"/results/*.json --trace "$src/tests/data/sample.trace.json" \
  --out "$tmp/plots" > "$tmp/list" 2> "$tmp/err" || { cat "$tmp/err"; fail "plot_results.py failed"; }
# One throughput chart, one measured-vs-simulated chart (cpu-16rank is shipped measured and simulated),
# a phase chart per results document, a load heatmap per measured document, one timeline.
docs=$(ls "$src"/results/*.json | wc -l)
measured=$(grep -l '"mode": "measured"' "$src"/results/*.json | wc -l)
want=$((2 + docs + measured + 1))
[ "$(ls "$tmp"/plots/*.png | wc -l)" -eq "$want" ] || { ls "$tmp/plots"; fail "want $want PNGs"; }
[ "$(wc -l < "$tmp/list")" -eq "$want" ] || fail "the script lists $(wc -l < "$tmp/list") files, want $want"
for f in throughput.png measured-vs-simulated.png timeline-sample.png phases-cpu-16rank.png load-cpu-16rank-zipf.png; do
  [ -f "$tmp/plots/$f" ] || fail "missing $f"
done
$py "$src/tests/cli/png_check.py" --min-ink 0.02 "$tmp"/plots/*.png || fail "a chart looks blank"
# Measured (#2c7fb8) and simulated (#e67e22) bars are both drawn.
$py "$src/tests/cli/png_check.py" --color 2c7fb8:5000 --color e67e22:5000 "$tmp/plots/throughput.png" \
  "$tmp/plots/measured-vs-simulated.png" || fail "measured and simulated bars missing"
# The committed charts are the ones the shipped results and traces (results/traces) give.
shipped_timelines=$(for t in "$src"/results/traces/*.json; do [ -f "$t" ] && echo "timeline-$(basename "$t" .trace.json).png"; done)
diff <(ls "$src/results/plots" | sort) <( (ls "$tmp/plots" | grep -v '^timeline-'; echo "$shipped_timelines") | grep -v '^$' | sort) \
  || fail "results/plots does not match the shipped results; regenerate with scripts/plot_results.py results/*.json --trace results/traces/*.json"

# Bad inputs: exit 2 with the file and the reason, nothing drawn.
echo '{"schema_version": 1, "algorithm": "balanced", "layers": []}' > "$tmp/plan.json"
"$py" "$src/scripts/plot_results.py" "$tmp/plan.json" --out "$tmp/bad" 2> "$tmp/err"; rc=$?
[ "$rc" -eq 2 ] && grep -q "plan.json: not a moe-bench results file" "$tmp/err" || { cat "$tmp/err"; fail "plan file: exit $rc"; }
[ ! -e "$tmp/bad" ] || fail "a refused run created its output directory"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["schema_version"]=2; json.dump(d, open(sys.argv[2],"w"))' \
  "$src/results/cpu-16rank.json" "$tmp/v2.json"
"$py" "$src/scripts/plot_results.py" "$tmp/v2.json" --out "$tmp/bad" 2> "$tmp/err"; rc=$?
[ "$rc" -eq 2 ] && grep -q "v2.json: schema_version 2 is not supported" "$tmp/err" || { cat "$tmp/err"; fail "schema 2: exit $rc"; }
echo '{"traceEvents": [{"ph": "M", "name": "process_name", "pid": 0, "args": {"name": "rank 0"}}]}' > "$tmp/empty.trace.json"
"$py" "$src/scripts/plot_results.py" --trace "$tmp/empty.trace.json" --out "$tmp/bad" 2> "$tmp/err"; rc=$?
[ "$rc" -eq 2 ] && grep -q "empty.trace.json: the trace has no complete" "$tmp/err" || { cat "$tmp/err"; fail "empty trace: exit $rc"; }
echo "plots: OK"
