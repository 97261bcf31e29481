#!/usr/bin/env bash
# Bad input: clear message naming the JSON path, printed once, non-zero exit on every rank, no hang.
set -uo pipefail
bin="$1"; src="$2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
source "$src/tests/cli/lib/expect.sh"

"$bin" --version | grep -q "moe-bench" || fail "--version"
"$bin" run --help | grep -q -- "--dump-outputs" || fail "run --help"

expect 2 "cannot open config file" -- "$bin" validate --config "$tmp/missing.json"
python3 - "$src" "$tmp" <<'PY'
import json, sys
src, tmp = sys.argv[1], sys.argv[2]
base = json.load(open(f"{src}/configs/cpu-4rank.json"))
def write(name, mutate):
    c = json.loads(json.dumps(base)); mutate(c); json.dump(c, open(f"{tmp}/{name}.json", "w"))
write("unknown_key", lambda c: c["model"].update(hiden=3))
write("bad_topk", lambda c: c["model"].update(top_k=17))
write("bad_policy", lambda c: c["strategies"][1].update(load_balancing={"policy": "magic"}))
PY
expect 2 "model.hiden" -- "$bin" validate --config "$tmp/unknown_key.json"
expect 2 "model.top_k" -- "$bin" validate --config "$tmp/bad_topk.json"
expect 2 "strategies\[1\].load_balancing.policy" -- "$bin" validate --config "$tmp/bad_policy.json"
expect 2 "strategies\[0\]" -- "$bin" validate --config "$src/configs/paper-16xh100.json"
grep -q "GB" "$tmp/out" || fail "paper memory message lacks the numbers"
expect 0 "is valid for 16 ranks" -- "$bin" validate --config "$src/configs/cpu-16rank.json"

# Under mpirun: a config error is printed once and every rank exits.
expect 2 "model.top_k" -- "${MPIEXEC:-mpirun}" -np 3 --oversubscribe "$bin" run --config "$tmp/bad_topk.json"
[ "$(grep -c "model.top_k" "$tmp/out")" -eq 1 ] || { cat "$tmp/out"; fail "error printed more than once"; }
expect 2 "cluster" -- "${MPIEXEC:-mpirun}" -np 2 --oversubscribe "$bin" run --config "$src/configs/cpu-4rank.json"
grep -q "mpirun -np 4\|-np 4\|4 ranks\|= 4" "$tmp/out" || { cat "$tmp/out"; fail "world-size message lacks the needed rank count"; }
expect 2 "\-\-out" -- "${MPIEXEC:-mpirun}" -np 4 --oversubscribe "$bin" run --config "$src/configs/cpu-4rank.json" --out /nonexistent/dir/r.json
# No GPU here: an explicit cuda request fails clearly on every rank.
expect 2 "run.backend" -- "${MPIEXEC:-mpirun}" -np 2 --oversubscribe "$bin" run --config "$src/configs/cpu-4rank.json" --backend cuda
echo "errors: OK"
