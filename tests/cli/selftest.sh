#!/usr/bin/env bash
# selftest on a machine without a usable GPU ends cleanly (exit 2, "no CUDA device") on every rank;
# a CPU-only build says it has no CUDA backend. `run --backend auto` falls back to cpu with a notice.
set -uo pipefail
bin="$1"; src="$2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
timeout 120 "${MPIEXEC:-mpirun}" -np 2 --oversubscribe "$bin" selftest --backend cuda > "$tmp/out" 2>&1
rc=$?
cat "$tmp/out"
[ "$rc" -ne 124 ] || { echo "FAIL: selftest hung"; exit 1; }
[ "$rc" -eq 2 ] || { echo "FAIL: selftest exit $rc, want 2"; exit 1; }
if "$bin" --version | grep -q "CUDA backend built"; then
  grep -q "selftest: no CUDA device" "$tmp/out" || { echo "FAIL: no 'no CUDA device' message"; exit 1; }
  [ "$(grep -c "selftest: no CUDA device" "$tmp/out")" -eq 1 ] || { echo "FAIL: message printed more than once"; exit 1; }
  # auto falls back to cpu with a one-line notice and still verifies.
  timeout 300 "${MPIEXEC:-mpirun}" -np 4 --oversubscribe "$bin" run --config "$src/configs/cpu-4rank.json" \
    --backend auto --iterations 1 --out "$tmp/r.json" > "$tmp/run" 2>&1 || { cat "$tmp/run"; echo "FAIL: auto run"; exit 1; }
  grep -q "falls back to cpu" "$tmp/run" || { cat "$tmp/run"; echo "FAIL: no fallback notice"; exit 1; }
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert r['context']['backend']=='cpu' and 'falls back' in r['context']['notice'] and all(s['verification']['passed'] for s in r['strategies'])" "$tmp/r.json" || exit 1
else
  grep -q "built without the CUDA backend" "$tmp/out" || { echo "FAIL: no 'built without' message"; exit 1; }
fi
echo "selftest: OK"
