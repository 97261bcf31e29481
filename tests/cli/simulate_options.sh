#!/usr/bin/env bash
# simulate --with on a cluster value that the --hardware profile also sets: the --with value is
# simulated (it used to be replaced silently by the profile's), with a note; --set still wins.
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
echo "simulate_options: OK"
