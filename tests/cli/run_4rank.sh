#!/usr/bin/env bash
# End to end through the CLI: 4 ranks run cpu-4rank with --dump-outputs; the results JSON and the
# .npy dumps are checked for the documented schema and for passing verification; host_ms gives each
# phase's host time (gate in both strategies, dispatch in ep), at most the phase's time.
set -euo pipefail
bin="$1"; src="$2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/dump"
"${MPIEXEC:-mpirun}" -np 4 --oversubscribe --bind-to none "$bin" run --config "$src/configs/cpu-4rank.json" \
  --iterations 2 --out "$tmp/results.json" --dump-outputs "$tmp/dump" > "$tmp/stdout.txt"
python3 - "$tmp" <<'PY'
import json, os, sys
tmp = sys.argv[1]
r = json.load(open(os.path.join(tmp, "results.json")))
assert r["schema_version"] == 1
assert r["status"] == "ok", r["status"]
assert r["tool"]["name"] == "moe-bench"
ctx = r["context"]
assert ctx["mode"] == "measured" and ctx["backend"] == "cpu" and ctx["world_size"] == 4, ctx
assert len(ctx["hosts"]) == 4 and ctx["mpi"]
assert r["config"]["run"]["iterations"] == 2, "CLI override must be recorded in the config"
assert [s["name"] for s in r["strategies"]] == ["baseline", "proposed"]
for s in r["strategies"]:
    v = s["verification"]
    assert v["checked"] and v["passed"] and 0 <= v["max_rel_error"] <= 1e-4, (s["name"], v)
    assert len(v["decode_max_rel_error"]) == r["config"]["workload"]["decode_steps"]
    assert s["prefill"]["tokens"] == 8 * 32 and s["prefill"]["tokens_per_s"] > 0
    t = s["decode"]["tpot_ms"]
    assert 0 < t["p50"] <= t["p99"] and t["mean"] > 0
    assert s["decode"]["steps"] == 8 and s["decode"]["batch"] == 8
    for phase in ("attention", "gate", "idle"):
        p = s["phases_ms"]["decode_step"][phase]
        assert p["max"] >= p["mean"] >= 0, (phase, p)
    assert s["traffic"]["inter_node_bytes"] == 0, "1 node: nothing crosses nodes"
    assert s["traffic"]["intra_node_bytes"] > 0
    assert len(s["load"]["layers"]) == 4
    assert s["memory"]["peak_allocated_bytes_max"] > 0
    assert s["efficiency"]["flops_per_iteration"] > 0
assert r["strategies"][0]["phases_ms"]["decode_step"]["tp_allreduce"]["max"] > 0
# Host work inside the phases: on the CPU backend the host part of a phase is at most its time.
for s in r["strategies"]:
    for step in ("prefill", "decode_step"):
        for phase, h in s["host_ms"][step].items():
            p = s["phases_ms"][step][phase]
            assert 0 <= h["mean"] <= h["max"] <= p["max"] + 1e-6 and h["mean"] <= p["mean"] + 1e-6, (s["name"], step, phase, h, p)
        assert s["host_ms"][step]["gate"]["mean"] > 0, (s["name"], step)
        assert s["host_ms"][step]["expert"]["max"] == 0, (s["name"], step)
    ep = s["kind"] == "ep"
    assert (s["host_ms"]["decode_step"]["dispatch"]["mean"] > 0) == ep, s["name"]
assert r["strategies"][1]["phases_ms"]["decode_step"]["dispatch"]["max"] > 0
c = r["comparison"][0]
assert c["name"] == "proposed" and c["vs"] == "baseline" and c["tps_ratio"] > 0

index = json.load(open(os.path.join(tmp, "dump", "index.json")))
for name in ("reference", "baseline", "proposed"):
    for part, rows in (("prefill", 8 * 32), ("decode", 8 * 8)):
        path = os.path.join(tmp, "dump", index[name][part])
        data = open(path, "rb").read()
        assert data[:6] == b"\x93NUMPY", path
        hlen = int.from_bytes(data[8:10], "little")
        header = data[10:10 + hlen].decode()
        assert "'<f4'" in header and f"({rows}, 256)" in header, header
        assert (10 + hlen) % 64 == 0
        assert len(data) - 10 - hlen == rows * 256 * 4
print("run_4rank: results and dumps OK")
PY
grep -q "proposed vs baseline" "$tmp/stdout.txt"
