#!/usr/bin/env bash
# The reference docs cover what the program reads and writes: every config key (from the config echo
# of a run with both strategy kinds, every default filled in) is in docs/config.md with its default,
# and every key of the shipped results files is named in results/README.md.
set -uo pipefail
bin="$1"; src="$2"
python3 - "$src" <<'PY' || { echo "FAIL: docs out of date"; exit 1; }
import json, re, sys
src = sys.argv[1]
config_doc = open(f"{src}/docs/config.md").read()
results_doc = open(f"{src}/results/README.md").read()
missing = []  # messages, in order, without repeats

# Config: the echo of cpu-16rank-zipf (tp_pp and ep strategies) lists every key with its default.
echo = json.load(open(f"{src}/results/cpu-16rank-zipf.json"))["config"]
rows = {}
for line in config_doc.splitlines():
    m = re.match(r"\| `([^`]+)` \|[^|]*\| ([^|]*) \|", line)
    if m:
        rows.setdefault(m.group(1), []).append(m.group(2).strip())
def leaves(v, path):
    if isinstance(v, dict):
        for k, x in v.items():
            yield from leaves(x, f"{path}.{k}" if path else k)
    elif isinstance(v, list) and v and isinstance(v[0], dict):
        for x in v:
            yield from leaves(x, path + "[]")
    else:
        yield path, v
for path, value in leaves(echo, ""):
    parts = path.replace("[]", "").split(".")
    # Tables name keys relative to their section (`gpu.memory_gb` under cluster, `threshold` under load_balancing).
    candidates = [".".join(parts[i:]) for i in range(len(parts))]
    key = next((c for c in candidates if c in rows), None)
    if key is None:
        missing.append(f"docs/config.md lacks config key {path}")
lb = echo["strategies"][0]["load_balancing"]
# Defaults the issue names as undocumented before: each row must state the value of the echo.
for key, value in [("microbatches", None), ("renormalize", "true"), ("threshold", lb["threshold"]), ("step", lb["step"]),
                   ("update_interval_tokens", lb["update_interval_tokens"]), ("capacity_factor", lb["capacity_factor"])]:
    if value is None:
        value = 1
    want = str(value).lower() if not isinstance(value, float) or value != int(value) else str(int(value))
    if not any(want in d for d in rows.get(key, [])):
        missing.append(f"docs/config.md: default of {key} is not {want}: {rows.get(key)}")

# Results: every key name used in the shipped results appears in results/README.md.
import glob
names = set()
def keys(v):
    if isinstance(v, dict):
        for k, x in v.items():
            names.add(k)
            keys(x)
    elif isinstance(v, list):
        for x in v[:2]:
            keys(x)
for f in glob.glob(f"{src}/results/*.json"):
    d = json.load(open(f))
    d.pop("config", None)  # documented in docs/config.md
    hw = d.get("context", {}).pop("hardware", None)  # the profile: docs/simulator.md
    d.get("context", {}).pop("environment", None)    # variable names, documented as a group
    keys(d)
for k in sorted(names):
    if not re.search(r"(`|\b)" + re.escape(k) + r"(`|\b)", results_doc):
        missing.append(f"results/README.md does not mention results key '{k}'")
missing = list(dict.fromkeys(missing))
if missing:
    print("\n".join(missing))
    sys.exit(1)
print(f"docs: {len(names)} results keys and the config keys are documented")
PY

# Demo output stays out of the committed results: scripts/run.sh writes to out/, which git ignores.
grep -q -- "--out out/" "$src/scripts/run.sh" || { echo "FAIL: scripts/run.sh does not write to out/"; exit 1; }
! grep -q -- "--out results/" "$src/scripts/run.sh" || { echo "FAIL: scripts/run.sh overwrites committed results"; exit 1; }
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
  git -C "$src" check-ignore -q out/cpu-16rank.json || { echo "FAIL: out/ is not ignored by git"; exit 1; }
  git -C "$src" check-ignore -q skewed-32rank-plan.json || { echo "FAIL: place's default plan file is not ignored"; exit 1; }
fi
echo "docs: demo output goes to out/"
