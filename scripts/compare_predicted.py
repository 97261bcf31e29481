#!/usr/bin/env python3
"""Predicted (moe-bench simulate) vs measured (moe-bench run) per strategy and phase, with the error.

usage: compare_predicted.py SIMULATED.json MEASURED.json
Phase times are per step, max over ranks. The runtime leaves residual adds and copies outside any
phase (its "idle"); the simulator books them as "other": both are compared as other+idle.
"""
import json
import sys


def phases(entry, step):
    p = {k: v["max"] for k, v in entry["phases_ms"][step].items()}
    p["other+idle"] = p.pop("other", 0.0) + p.pop("idle", 0.0)
    return p


def err(pred, meas):
    return (pred - meas) / meas * 100 if meas > 0 else float("nan")


def main(sim_path, run_path):
    sim = {s["name"]: s for s in json.load(open(sim_path))["strategies"]}
    run = {s["name"]: s for s in json.load(open(run_path))["strategies"]}
    worst = 0.0
    print(f"{'strategy':<10} {'quantity':<26} {'predicted':>11} {'measured':>11} {'error':>8}")
    for name, m in run.items():
        s = sim.get(name)
        if s is None:
            continue
        rows = [("prefill time ms", s["prefill"]["time_s"]["mean"] * 1e3, m["prefill"]["time_s"]["mean"] * 1e3),
                ("decode TPOT ms", s["decode"]["tpot_ms"]["mean"], m["decode"]["tpot_ms"]["mean"])]
        worst = max(worst, abs(err(rows[0][1], rows[0][2])), abs(err(rows[1][1], rows[1][2])))
        for step, label in (("prefill", "prefill"), ("decode_step", "decode")):
            ps, pm = phases(s, step), phases(m, step)
            for k in pm:
                if pm[k] > 0.001 or ps.get(k, 0) > 0.001:
                    rows.append((f"  {label} {k} ms", ps.get(k, 0.0), pm[k]))
        for q, p, me in rows:
            print(f"{name:<10} {q:<26} {p:>11.3f} {me:>11.3f} {err(p, me):>7.1f}%")
        for step, label in (("prefill", "prefill"), ("decode_step", "decode")):
            ps, pm = s.get("overlap", {}).get(step), m.get("overlap", {}).get(step)
            if isinstance(ps, dict) and isinstance(pm, dict) and pm.get("comm_ms", 0) > 0:
                p, me = ps["efficiency"], pm["efficiency"]
                print(f"{name:<10} {'  ' + label + ' overlap efficiency':<26} {p:>11.3f} {me:>11.3f} "
                      f"{(p - me) * 100:>+6.1f}pt")
    print(f"\nworst step-time error: {worst:.1f}%")
    return worst


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
