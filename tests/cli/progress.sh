#!/usr/bin/env bash
# run's progress line (stderr, rank 0 only, never in the results JSON), --quiet, and output paths
# checked before anything runs: --out a directory is refused at once, --dump-outputs creates DIR and
# holds the reference of every load-balancing policy verified against.
set -uo pipefail
bin="$1"; src="$2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
mpi=("${MPIEXEC:-mpirun}" -np 4 --oversubscribe --bind-to none)

# Interval 0: a line after every step (pipes are not terminals: one line each).
MOE_PROGRESS_INTERVAL_S=0 timeout 300 "${mpi[@]}" "$bin" run --config "$src/configs/cpu-4rank.json" --iterations 2 \
  --out "$tmp/r.json" > "$tmp/stdout" 2> "$tmp/stderr" || { cat "$tmp/stderr"; fail "run"; }
steps=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"]["workload"]["decode_steps"])' "$tmp/r.json")
grep -q "^moe-bench: baseline (1/2) decode iteration 2/2 step $steps/$steps  elapsed [0-9]*s  ETA " "$tmp/stderr" \
  || { cat "$tmp/stderr"; fail "no progress line for baseline's last decode step"; }
grep -q "^moe-bench: proposed (2/2) check  elapsed" "$tmp/stderr" || { cat "$tmp/stderr"; fail "no progress line for the check"; }
# One line per step of one rank: warm-up, 2 x (prefill + steps), check; per strategy.
want=$(( 2 * (2 + 2 * (1 + steps) + 1) ))
python3 - "$tmp/r.json" <<'PY' || fail "warm-up steps"
import json, sys
w = json.load(open(sys.argv[1]))["config"]["workload"]
assert w["warmup_steps"] == 1 and w["decode_steps"] >= 1, w
PY
[ "$(grep -c '^moe-bench: .*elapsed' "$tmp/stderr")" -eq "$want" ] || { cat "$tmp/stderr"; fail "want $want progress lines (rank 0 only)"; }
! grep -q "elapsed" "$tmp/stdout" || fail "progress went to stdout"
! grep -q "ETA" "$tmp/r.json" || fail "progress went into the results JSON"

MOE_PROGRESS_INTERVAL_S=0 timeout 300 "${mpi[@]}" "$bin" run --config "$src/configs/cpu-4rank.json" --iterations 1 \
  --quiet --dump-outputs "$tmp/new/dumps" > "$tmp/stdout" 2> "$tmp/stderr" || { cat "$tmp/stderr"; fail "run --quiet"; }
! grep -q "elapsed" "$tmp/stderr" || { cat "$tmp/stderr"; fail "--quiet printed progress"; }
[ -f "$tmp/new/dumps/index.json" ] || fail "--dump-outputs did not create its directory"
# A reference per load-balancing policy verified against: baseline (none) and proposed (paper).
python3 - "$tmp/new/dumps" <<'PY' || fail "reference dumps"
import json, struct, sys
d = sys.argv[1]
index = json.load(open(f"{d}/index.json"))
assert index["reference_of"] == {"baseline": "reference", "proposed": "reference-paper"}, index["reference_of"]
def npy(path):  # float32, C order (core/atomic_file.cpp)
    raw = open(path, "rb").read()
    header_len = struct.unpack("<H", raw[8:10])[0]
    body = raw[10 + header_len:]
    return struct.unpack(f"<{len(body) // 4}f", body)
for strategy, ref in index["reference_of"].items():
    for part in ("prefill", "decode"):
        a, b = npy(f"{d}/{strategy}.{part}.npy"), npy(f"{d}/{ref}.{part}.npy")
        assert len(a) == len(b) > 0
        err = max(abs(x - y) for x, y in zip(a, b)) / max(abs(y) for y in b)
        assert err <= 1e-4, (strategy, ref, part, err)
PY

# --out a directory: refused before measuring (exit 2 at once, nothing measured).
timeout 120 "${mpi[@]}" "$bin" run --config "$src/configs/cpu-4rank.json" --out "$tmp" > "$tmp/o" 2>&1; rc=$?
[ "$rc" -eq 2 ] && grep -q -- "--out: '$tmp' is a directory" "$tmp/o" || { cat "$tmp/o"; fail "--out DIR: exit $rc"; }
! grep -q "decode tok/s" "$tmp/o" || fail "--out DIR ran the strategies first"
echo "progress: OK"
