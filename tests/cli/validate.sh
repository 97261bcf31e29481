#!/usr/bin/env bash
# validate: every strategy that cannot run is listed (not only the first), and backend auto says
# what `run` would use on a machine without GPUs.
set -uo pipefail
bin="$1"; src="$2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$bin" validate --config "$src/configs/paper-16xh100.json" > "$tmp/out" 2>&1; rc=$?
[ "$rc" -eq 2 ] || { cat "$tmp/out"; fail "paper config: exit $rc"; }
grep -q "strategies: 3 of 3 strategies cannot run:" "$tmp/out" || { cat "$tmp/out"; fail "no count of failing strategies"; }
grep -q "^  strategies\[0\]: strategy 'baseline' needs .* GB" "$tmp/out" || { cat "$tmp/out"; fail "baseline not listed"; }
grep -q "^  strategies\[1\]: strategy 'proposed' needs .* GB" "$tmp/out" || { cat "$tmp/out"; fail "proposed not listed"; }
grep -q "^  strategies\[2\]: strategy 'hybrid' needs .* GB" "$tmp/out" || { cat "$tmp/out"; fail "hybrid not listed"; }

python3 - "$src/configs/cpu-4rank.json" "$tmp/auto.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["run"] = {"backend": "auto"}; json.dump(c, open(sys.argv[2], "w"))
PY
"$bin" validate --config "$tmp/auto.json" > "$tmp/out" 2>&1 || { cat "$tmp/out"; fail "auto config"; }
grep -q "is valid for 4 ranks on backend cuda (fp16), as on GPUs; .*uses cpu (fp32)" "$tmp/out" \
  || { cat "$tmp/out"; fail "backend auto does not say that run falls back to cpu"; }
"$bin" validate --config "$tmp/auto.json" --backend cpu > "$tmp/out" 2>&1 || { cat "$tmp/out"; fail "--backend cpu"; }
grep -q "is valid for 4 ranks on backend cpu (fp32)$" "$tmp/out" || { cat "$tmp/out"; fail "--backend cpu message"; }
"$bin" validate --config "$tmp/auto.json" --ranks 8 > "$tmp/out" 2>&1; rc=$?
[ "$rc" -eq 2 ] && grep -q "mpirun -np 4" "$tmp/out" || { cat "$tmp/out"; fail "--ranks 8 for a 4-rank config: exit $rc"; }
echo "validate: OK"
