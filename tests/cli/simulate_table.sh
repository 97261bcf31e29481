#!/usr/bin/env bash
# simulate's console: a config whose weights alone do not fit says so with the amount; long strategy
# names keep the table aligned; memory is printed with its unit; the overlap column shows the mode.
set -euo pipefail
bin="$1"; src="$2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$bin" simulate --config "$src/configs/paper-16xh100.json" --with model.ffn_hidden=3000000 \
  --with strategies.1.name=a-rather-long-strategy-name > "$tmp/out"
grep -Eq '^  the weights alone \([0-9.]+ GB per GPU\) exceed the GPU memory \(80\.0 GB\) by [0-9.]+ GB' "$tmp/out" \
  || { cat "$tmp/out"; fail "no 'weights alone' message with the amount"; }
grep -q "fits: batch <= 0" "$tmp/out" && fail "prints an empty 'fits: batch <= 0' range"
grep -q "^  none: no prompt length fits" "$tmp/out" || { cat "$tmp/out"; fail "empty feasible variant not explained"; }
python3 - "$tmp/out" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
header = next(l for l in lines if l.startswith("strategy"))
rows = [l for l in lines if (l.startswith("baseline ") or l.startswith("a-rather-long-strategy-name ")) and " vs " not in l]
assert len(rows) == 2, rows
kind_col = header.index("kind")
for r in rows:
    assert r[kind_col:kind_col + 5] in ("tp_pp", "ep   "), (header, r)   # columns stay aligned
    assert re.search(r"\d+\.\d (GB|MB|KB) ", r), r                       # memory with its unit
assert rows[0].split()[5] == "none" and re.match(r"0\.\d\d$", rows[1].split()[5]), rows   # overlap column
print("simulate table OK")
PY

# --set errors name the key once, the keys allowed where it points, and the expected type.
set +e
"$bin" simulate --config "$src/configs/cpu-4rank.json" --set gpu.bogus=1 > "$tmp/err" 2>&1; rc1=$?
"$bin" simulate --config "$src/configs/cpu-4rank.json" --set gpu.gemm_efficiency=abc >> "$tmp/err" 2>&1; rc2=$?
set -e
[[ $rc1 -eq 2 && $rc2 -eq 2 ]] || { cat "$tmp/err"; fail "--set errors must exit 2 (got $rc1, $rc2)"; }
grep -q "^moe-bench: error: --set gpu.bogus: unknown key (gpu has name, memory_gb, " "$tmp/err" || { cat "$tmp/err"; fail "--set unknown key"; }
grep -q '^moe-bench: error: --set gpu.gemm_efficiency: must be a number, got string "abc"' "$tmp/err" || { cat "$tmp/err"; fail "--set type"; }
[ "$(grep -c 'gpu.bogus' "$tmp/err")" -eq 1 ] && ! grep -q "gpu.bogus: gpu.bogus" "$tmp/err" || fail "--set key printed twice"
echo "simulate --set errors OK"
