#!/usr/bin/env python3
"""Figures of scripts/bench-overlap.sh from the files of one session:
measured.json (run), simulated.json (simulate with a calibrated profile), exchange.json (moe-bench
exchange on the byte matrix of one prefill dispatch) and trace.json (run --trace)."""
import json
import sys
from collections import defaultdict


def load(path):
    with open(path) as f:
        return json.load(f)


def moe_ms_per_layer(strategy, step, layers):
    p = strategy["phases_ms"][step]
    return sum(p[k]["mean"] for k in ("dispatch", "expert", "combine")) / layers


def transfer_ms_per_layer(trace, strategy_name, layers):
    """Mean over ranks of the dispatch + combine span time per layer in the traced prefill."""
    per_rank = defaultdict(float)
    for e in trace["traceEvents"]:
        if e.get("ph") != "X" or e["args"].get("strategy") != strategy_name or e["args"].get("step") != 0:
            continue
        if e["name"] in ("dispatch", "combine"):
            per_rank[e["pid"]] += e["dur"] / 1e3
    if not per_rank:
        return None
    return sum(per_rank.values()) / len(per_rank) / layers


def main():
    measured, simulated, exchange, trace = (load(p) for p in sys.argv[1:5])
    layers = measured["config"]["model"]["layers"]
    sim = {s["name"]: s for s in simulated["strategies"]}
    base = next((s for s in measured["strategies"] if s["kind"] == "ep" and s["overlap"]["mode"] == "none"), None)
    print(f"machine: {measured['context'].get('hosts', ['?'])[0]}, {measured['context']['world_size']} ranks, "
          f"load figures from one session")
    print()
    print(f"{'strategy':16} {'mode':10} {'prefill MoE ms/layer':>21} {'vs none':>8} {'prefill eff':>11} "
          f"{'predicted':>9} {'diff pts':>8} {'decode eff':>10} {'TPOT ms':>8} {'predicted':>9}")
    for s in measured["strategies"]:
        mode = s["overlap"]["mode"]
        moe = moe_ms_per_layer(s, "prefill", layers)
        ratio = ""
        if base is not None and s["kind"] == "ep":
            ratio = f"{moe / moe_ms_per_layer(base, 'prefill', layers):.2f}x"
        eff = s["overlap"]["prefill"]["efficiency"]
        p = sim.get(s["name"])
        peff = p["overlap"]["prefill"]["efficiency"] if p else None
        ptpot = p["decode"]["tpot_ms"]["mean"] if p else None
        print(f"{s['name']:16} {mode:10} {moe:21.2f} {ratio:>8} {eff:11.2f} "
              f"{peff if peff is not None else float('nan'):9.2f} "
              f"{(eff - peff) * 100 if peff is not None else float('nan'):8.1f} "
              f"{s['overlap']['decode_step']['efficiency']:10.2f} {s['decode']['tpot_ms']['mean']:8.2f} "
              f"{ptpot if ptpot is not None else float('nan'):9.2f}")
    print()
    raw = exchange["mpi_alltoallv_ms"]
    print(f"raw exchange of one prefill dispatch's byte matrix ({exchange['rows_per_rank']} rows of "
          f"{exchange['row_bytes']} B per rank): MPI_Alltoallv {raw:.2f} ms, posted per-peer "
          f"{exchange['posted_wait_ms']:.2f} ms, posted by source {exchange['posted_by_source_ms']:.2f} ms")
    if base is not None:
        t = transfer_ms_per_layer(trace, base["name"], layers)
        if t is not None:
            print(f"{base['name']}: dispatch + combine per prefill layer {t:.2f} ms = {t / (2 * raw):.2f}x two raw "
                  f"MPI_Alltoallv (the run's transfers, from posting to completion, in program order)")


def progress_modes(poll, thread):
    print()
    print("MPI progress: polling between kernel blocks (default) vs a progress thread, same config, one run after the other")
    print(f"{'strategy':16} {'prefill s poll':>14} {'thread':>8} {'TPOT ms poll':>13} {'thread':>8}")
    th = {s["name"]: s for s in thread["strategies"]}
    for s in poll["strategies"]:
        p = th.get(s["name"])
        if p is None:
            continue
        print(f"{s['name']:16} {s['prefill']['time_s']['mean']:14.3f} {p['prefill']['time_s']['mean']:8.3f} "
              f"{s['decode']['tpot_ms']['mean']:13.2f} {p['decode']['tpot_ms']['mean']:8.2f}")


if __name__ == "__main__":
    main()
    if len(sys.argv) > 5:
        progress_modes(load(sys.argv[1]), load(sys.argv[5]))
