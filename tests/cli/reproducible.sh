#!/usr/bin/env bash
# Reproducibility on the CPU backend: the same config run twice on 4 ranks gives bit-identical
# outputs (every .npy of --dump-outputs) and routing trace digests; each results file records what
# a rerun needs (status, git sha as --version prints it, argv, the config with defaults filled in,
# the environment variables that matter).
set -euo pipefail
bin="$1"; src="$2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

python3 - "$src" "$tmp" <<'PY'
import json, sys
src, tmp = sys.argv[1:]
c = json.load(open(f"{src}/configs/cpu-4rank.json"))
c["name"] = "reproducible"
c["model"].update({"layers": 2, "hidden": 64, "ffn_hidden": 128, "heads": 2, "head_dim": 16})
c["workload"].update({"batch_sequences": 8, "prompt_tokens": 8, "decode_steps": 3, "routing": "zipf:1.2"})
c["strategies"][1]["chunks"] = 2
c["run"]["iterations"] = 1
del c["run"]["verify"]   # a default the results must fill in
json.dump(c, open(f"{tmp}/cfg.json", "w"))
PY

for i in 1 2; do
  mkdir "$tmp/d$i"
  MOE_REPRO_MARKER=run$i "${MPIEXEC:-mpirun}" -np 4 --oversubscribe --bind-to none "$bin" run --config "$tmp/cfg.json" \
    --out "$tmp/r$i.json" --dump-outputs "$tmp/d$i" > /dev/null
done

n=0
for f in "$tmp"/d1/*.npy; do
  cmp "$f" "$tmp/d2/$(basename "$f")" || { echo "FAIL: $(basename "$f") differs between two runs"; exit 1; }
  n=$((n + 1))
done
# A reference per balancing setting (baseline: none, proposed: paper), baseline, proposed; x prefill, decode.
[ "$n" -eq 8 ] || { echo "FAIL: expected 8 dumps (2 references, baseline, proposed x prefill, decode), got $n"; exit 1; }

python3 - "$tmp" "$("$bin" --version)" <<'PY'
import json, sys
tmp, version = sys.argv[1:]
r1, r2 = (json.load(open(f"{tmp}/r{i}.json")) for i in (1, 2))
for r in (r1, r2):
    assert r["status"] == "ok", r["status"]
    sha = r["tool"]["git_sha"]
    assert sha and sha != "unknown" and f"(git {sha})" in version, (sha, version)
    assert r["config"]["run"]["verify"] is True and r["config"]["run"]["timeout_s"] == 300, r["config"]["run"]
    assert r["config"]["strategies"][0]["load_balancing"]["threshold"] == 1.2
    env = r["context"]["environment"]
    assert env.get("OPENBLAS_NUM_THREADS") == "1", env
    assert any(k.startswith("OMPI_") for k in env), env
    assert not any(k in env for k in ("PATH", "HOME")), "only the variables that matter"
    assert r["context"]["argv"][1:3] == ["run", "--config"], r["context"]["argv"]
assert r1["context"]["environment"]["MOE_REPRO_MARKER"] == "run1"
assert r2["context"]["environment"]["MOE_REPRO_MARKER"] == "run2"
assert r1["config"] == r2["config"]
for s1, s2 in zip(r1["strategies"], r2["strategies"]):
    d = s1["routing"]["trace_digest"]
    assert d and d == s2["routing"]["trace_digest"], (s1["name"], d, s2["routing"]["trace_digest"])
    assert s1["load"]["layers"] == s2["load"]["layers"], s1["name"]
    assert s1["verification"]["max_rel_error"] == s2["verification"]["max_rel_error"], s1["name"]
print("reproducible: outputs, digests and run records OK")
PY
