#!/usr/bin/env bash
# Benchmark (not a test): time `moe-bench place` on a generated 1024-GPU cluster (128 nodes x 8),
# 256 experts x 61 layers, top-8, per routing (default: uniform, zipf:1.2, zipf:1.2,local:0.8).
# Builds nothing. Usage: scripts/bench-place.sh [path/to/moe-bench] [routing ...]
set -euo pipefail
bin=${1:-build/moe-bench}
shift || true
routings=("$@")
[ ${#routings[@]} -gt 0 ] || routings=(uniform zipf:1.2 zipf:1.2,local:0.8)
[ -x "$bin" ] || { echo "bench-place: no moe-bench binary at '$bin' (build first)" >&2; exit 2; }

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/place-1024.json" <<'JSON'
{
  "name": "place-1024gpu-256e-61l",
  "model": {"layers": 61, "hidden": 7168, "ffn_hidden": 2048, "experts": 256, "top_k": 8,
            "attention": false, "dtype": "bf16", "seed": 1234},
  "workload": {"batch_sequences": 4096, "prompt_tokens": 1024, "decode_steps": 32, "routing": "gate"},
  "cluster": {"nodes": 128, "gpus_per_node": 8,
              "inter_node": {"bandwidth_gb_s": 50, "nics_per_node": 8, "latency_us": 5}},
  "strategies": [{"name": "proposed", "kind": "ep", "ep": 1024, "placement": "topology_aware"}]
}
JSON

echo "load average (1/5/15 min): $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
for algorithm in balanced topology_aware; do
  for routing in "${routings[@]}"; do
    start=$(date +%s.%N)
    out=$("$bin" place --config "$dir/place-1024.json" --algorithm "$algorithm" --routing "$routing" --no-write)
    end=$(date +%s.%N)
    search=$(grep '^search time:' <<<"$out" | sed 's/^search time: //')
    summary=$(grep -A1 '^all layers:' <<<"$out" | sed 's/^all layers: //; s/^ *//' | paste -sd'|' | sed 's/|/  vs  /')
    printf '%-15s %-22s search %s; whole command %.2f s\n    %s\n' "$algorithm" "$routing" "$search" \
      "$(echo "$end - $start" | bc)" "$summary"
  done
done
