#!/usr/bin/env bash
# simulate --with on a cluster value that the --hardware profile also sets: the --with value is
# simulated (it used to be replaced silently by the profile's), with a note; --set still wins.
# --with errors name the argument once, the valid prefix and the expected type.
set -uo pipefail
bin="$1"; src="$2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
hw="$src/configs/hardware/h100-sxm-ndr.json"

"$bin" simulate --config "$src/configs/paper-16xh100.json" --hardware "$hw" --with cluster.gpu.memory_gb=141 \
  --out "$tmp/a.json" > "$tmp/out" 2> "$tmp/err" || { cat "$tmp/err"; fail "simulate --with"; }
grep -q "also sets gpu.memory_gb of the hardware profile" "$tmp/err" || { cat "$tmp/err"; fail "no note"; }
"$bin" simulate --config "$src/configs/paper-16xh100.json" --hardware "$hw" --with cluster.gpu.memory_gb=141 \
  --set gpu.memory_gb=96 --out "$tmp/b.json" > /dev/null 2>&1 || fail "simulate --with --set"
python3 - "$tmp/a.json" "$tmp/b.json" <<'PY' || fail "memory_gb not applied"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["context"]["hardware"]["gpu"]["memory_gb"] == 141, a["context"]["hardware"]["gpu"]
assert a["config"]["cluster"]["gpu"]["memory_gb"] == 141
for s in a["strategies"]:
    assert abs(s["memory"]["capacity_bytes"] - 141e9) < 1, s["memory"]
assert b["context"]["hardware"]["gpu"]["memory_gb"] == 96, b["context"]["hardware"]["gpu"]
PY
# --with errors: exit 2, the argument named once, the valid prefix and what was expected.
cfg="$src/configs/cpu-4rank.json"
with_error() {  # with_error ASSIGNMENT MESSAGE
  "$bin" simulate --config "$cfg" --with "$1" > "$tmp/out" 2>&1; local rc=$?
  [ "$rc" -eq 2 ] || { cat "$tmp/out"; fail "--with $1: exit $rc"; }
  grep -qxF "moe-bench: error: --with $1: $2" "$tmp/out" || { cat "$tmp/out"; fail "--with $1: want '$2'"; }
}
with_error model.hiden=3 "unknown key 'hiden' (allowed keys: layers, hidden, ffn_hidden, experts, top_k, heads, head_dim, attention, renormalize, dtype, seed)"
with_error model.layers=abc 'must be an integer, got string "abc"'
with_error strategies.5.chunks=1 "index 5 out of range: 'strategies' has 2 entries (0..1)"
with_error strategies.x.chunks=1 "'strategies' is an array: 'x' must be an index 0..1"
with_error model.layers.x=1 "'model.layers' is number 4, not an object: 'x' cannot be set inside it"
with_error strategies.1.chunks=0 "must be a positive integer, got 0"
echo "simulate_options: OK"
