#!/usr/bin/python3
"""Plots of moe-bench results JSON (and optionally Chrome traces written by `run --trace`).

usage: /usr/bin/python3 scripts/plot_results.py RESULTS.json... --out DIR [--trace TRACE.json]...

Writes PNGs into DIR:
  throughput.png              decode tokens/s and TPOT (mean, p99 whisker) per strategy and config
  phases-<config>.png         per-rank mean phase time per decode step and per prefill, stacked, per strategy
  load-<config>.png           tokens per expert per layer (heatmap from strategies[].load.layers), measured files
  measured-vs-simulated.png   TPOT and prefill tokens/s of measured and simulated files of one config
  timeline-<trace>.png        the spans of a Chrome trace: one lane per rank and stream
Uses Debian's matplotlib (python3-matplotlib, for /usr/bin/python3; scripts/install-deps.sh installs it).
Reads only the files it is given. Exit 2 on a file that is not a moe-bench results file or trace.
"""
import argparse
import json
import math
import os
import re
import sys

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.stderr.write("plot_results.py: matplotlib is missing; install python3-matplotlib (scripts/install-deps.sh) "
                     "and run with /usr/bin/python3\n")
    sys.exit(3)

SCHEMA_VERSION = 1
# Phase order and colours shared by every chart (results JSON phases_ms keys).
PHASES = ["attention", "gate", "dispatch", "expert", "combine", "tp_allreduce", "pp_transfer", "other", "idle"]
PHASE_COLORS = {"attention": "#4e79a7", "gate": "#9c755f", "dispatch": "#f28e2b", "expert": "#59a14f",
                "combine": "#edc948", "tp_allreduce": "#e15759", "pp_transfer": "#b07aa1", "other": "#bab0ac",
                "idle": "#dddddd"}
MODE_COLORS = {"measured": "#2c7fb8", "simulated": "#e67e22"}


class InputError(Exception):
    pass


def slug(text):
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def load_results(path):
    """Every results document in `path` (a simulate --sweep file holds a list) as (label, doc)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise InputError(f"{path}: cannot open results file ({e.strerror})")
    except ValueError as e:
        raise InputError(f"{path}: not valid JSON ({e})")
    docs = data if isinstance(data, list) else [data]
    out = []
    for i, doc in enumerate(docs):
        label = f"{path}[{i}]" if isinstance(data, list) else path
        if not isinstance(doc, dict) or doc.get("tool", {}).get("name") != "moe-bench":
            raise InputError(f"{label}: not a moe-bench results file (no tool.name \"moe-bench\")")
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise InputError(f"{label}: schema_version {doc.get('schema_version')!r} is not supported "
                             f"(this script reads schema_version {SCHEMA_VERSION})")
        if not doc.get("strategies"):
            raise InputError(f"{label}: strategies is missing or empty")
        out.append((label, doc))
    return out


def config_label(doc):
    suffix = " (sim)" if doc["context"]["mode"] == "simulated" else ""
    return doc["config"]["name"] + suffix


def save(fig, out_dir, name, written):
    path = os.path.join(out_dir, name)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)  # never a half-written PNG
    written.append(path)


def plot_throughput(docs, out_dir, written):
    labels, tps, tpot, p99, colors = [], [], [], [], []
    for _, doc in docs:
        for s in doc["strategies"]:
            labels.append(f"{config_label(doc)}\n{s['name']}")
            tps.append(s["decode"]["tokens_per_s"])
            tpot.append(s["decode"]["tpot_ms"]["mean"])
            p99.append(s["decode"]["tpot_ms"]["p99"])
            colors.append(MODE_COLORS.get(doc["context"]["mode"], "#777777"))
    n = len(labels)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(max(10, 0.9 * n + 4), 5.5))
    x = range(n)
    a1.bar(x, tps, color=colors)
    a1.set_ylabel("decode tokens/s")
    a1.set_title("Decode throughput (higher is better)")
    a2.bar(x, tpot, color=colors, yerr=[[0] * n, [max(0.0, p - m) for p, m in zip(p99, tpot)]], capsize=3)
    a2.set_ylabel("TPOT, ms per decode step (whisker: p99)")
    a2.set_title("Time per output token (lower is better)")
    for ax, values in ((a1, tps), (a2, p99)):
        positive = [v for v in values if v > 0]
        if positive and max(positive) / min(positive) > 100:
            ax.set_yscale("log")
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in MODE_COLORS.values()]
    a1.legend(handles, list(MODE_COLORS), loc="upper left", fontsize=8)
    fig.tight_layout()
    save(fig, out_dir, "throughput.png", written)


def plot_phases(label, doc, out_dir, written, used_names):
    strategies = doc["strategies"]
    fig, axes = plt.subplots(1, 2, figsize=(max(9, 2.2 * len(strategies) + 4), 4.8))
    for ax, step, unit, title in ((axes[0], "decode_step", "ms per decode step", "Decode step"),
                                  (axes[1], "prefill", "ms per prefill", "Prefill")):
        bottoms = [0.0] * len(strategies)
        for phase in PHASES:
            values = [s.get("phases_ms", {}).get(step, {}).get(phase, {}).get("mean", 0.0) for s in strategies]
            if not any(v > 0 for v in values):
                continue
            ax.bar(range(len(strategies)), values, bottom=bottoms, color=PHASE_COLORS[phase], label=phase)
            bottoms = [b + v for b, v in zip(bottoms, values)]
        if step == "decode_step":
            tpot = [s["decode"]["tpot_ms"]["mean"] for s in strategies]
            ax.plot(range(len(strategies)), tpot, "k_", markersize=28, markeredgewidth=2, label="TPOT (max over ranks)")
        ax.set_xticks(range(len(strategies)))
        ax.set_xticklabels([s["name"] for s in strategies], rotation=20, ha="right")
        ax.set_ylabel(unit + " (mean over ranks)")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, loc="lower center", ncol=min(len(names), 5), bbox_to_anchor=(0.5, -0.08))
    fig.suptitle(f"Phase breakdown: {config_label(doc)} ({doc['context']['backend']}, "
                 f"{doc['context']['world_size']} ranks)")
    fig.tight_layout()
    save(fig, out_dir, unique(f"phases-{slug(config_label(doc))}.png", used_names), written)


def plot_load(label, doc, out_dir, written, used_names):
    with_layers = [s for s in doc["strategies"]
                   if s.get("load", {}).get("layers") and all("tokens_per_expert" in l for l in s["load"]["layers"])]
    if not with_layers:
        return
    fig, axes = plt.subplots(1, len(with_layers), figsize=(5.2 * len(with_layers) + 1, 3.6), squeeze=False)
    for ax, s in zip(axes[0], with_layers):
        layers = s["load"]["layers"]
        matrix = [l["tokens_per_expert"] for l in layers]
        im = ax.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_xlabel("expert")
        ax.set_ylabel("layer")
        ax.set_yticks(range(len(layers)))
        ax.set_yticklabels([str(l.get("layer", i)) for i, l in enumerate(layers)])
        bal = s["load"].get("min_balancedness")
        ax.set_title(f"{s['name']}" + (f"\nmin balancedness {bal:.2f}" if isinstance(bal, (int, float)) else ""),
                     fontsize=10)
        fig.colorbar(im, ax=ax, label="tokens (one iteration)")
    fig.suptitle(f"Tokens per expert: {config_label(doc)}")
    fig.tight_layout()
    save(fig, out_dir, unique(f"load-{slug(config_label(doc))}.png", used_names), written)


def plot_measured_vs_simulated(docs, out_dir, written):
    measured, simulated = {}, {}
    for _, doc in docs:
        table = simulated if doc["context"]["mode"] == "simulated" else measured
        for s in doc["strategies"]:
            table.setdefault((doc["config"]["name"], s["name"]), s)
    pairs = [k for k in measured if k in simulated]
    if not pairs:
        return False
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(max(9, 1.6 * len(pairs) + 5), 4.8))
    width = 0.38
    x = list(range(len(pairs)))
    for ax, get, ylabel, title in (
            (a1, lambda s: s["decode"]["tpot_ms"]["mean"], "TPOT, ms", "Decode TPOT"),
            (a2, lambda s: s["prefill"]["tokens_per_s"], "prefill tokens/s", "Prefill throughput")):
        m = [get(measured[k]) for k in pairs]
        p = [get(simulated[k]) for k in pairs]
        ax.bar([i - width / 2 for i in x], m, width, color=MODE_COLORS["measured"], label="measured")
        ax.bar([i + width / 2 for i in x], p, width, color=MODE_COLORS["simulated"], label="simulated")
        for i, (mv, pv) in enumerate(zip(m, p)):
            if mv > 0:
                ax.annotate(f"{(pv - mv) / mv * 100:+.0f}%", (i + width / 2, pv), ha="center", va="bottom", fontsize=8)
        if min(m + p) > 0 and max(m + p) / min(m + p) > 100:
            ax.set_yscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels([f"{c}\n{s}" for c, s in pairs], fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_title(title + " (label: prediction error)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, out_dir, "measured-vs-simulated.png", written)
    return True


def load_trace(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise InputError(f"{path}: cannot open trace ({e.strerror})")
    except ValueError as e:
        raise InputError(f"{path}: not valid JSON ({e})")
    events = data.get("traceEvents") if isinstance(data, dict) else data
    if not isinstance(events, list):
        raise InputError(f"{path}: not a Chrome trace (no traceEvents list)")
    spans = [e for e in events if isinstance(e, dict) and e.get("ph") == "X"]
    if not spans:
        raise InputError(f"{path}: the trace has no complete (ph \"X\") events")
    for i, e in enumerate(spans):
        for key in ("ts", "dur", "pid", "tid", "name"):
            if key not in e:
                raise InputError(f"{path}: traceEvents span {i} ({e.get('name', '?')}) lacks '{key}'")
    process, thread = {}, {}
    for e in events:
        if isinstance(e, dict) and e.get("ph") == "M":
            name = e.get("args", {}).get("name")
            if e.get("name") == "process_name":
                process[e.get("pid")] = name
            elif e.get("name") == "thread_name":
                thread[(e.get("pid"), e.get("tid"))] = name
    return spans, process, thread


def plot_timeline(path, out_dir, written, used_names):
    spans, process, thread = load_trace(path)
    lanes = sorted({(e["pid"], e["tid"]) for e in spans}, key=lambda k: (k[0], str(k[1])))
    lane_of = {k: i for i, k in enumerate(lanes)}
    t0 = min(e["ts"] for e in spans)
    names = sorted({e["name"] for e in spans})
    palette = plt.get_cmap("tab20")
    color = {n: PHASE_COLORS.get(n, palette(i % 20)) for i, n in enumerate(names)}
    fig, ax = plt.subplots(figsize=(13, max(3.0, 0.32 * len(lanes) + 1.6)))
    by_lane_name = {}
    for e in spans:  # one broken_barh per lane and span name keeps big traces fast
        by_lane_name.setdefault((lane_of[(e["pid"], e["tid"])], e["name"]), []).append(
            ((e["ts"] - t0) / 1000.0, max(e["dur"], 0) / 1000.0))
    for (lane, n), ranges in by_lane_name.items():
        ax.broken_barh(ranges, (lane - 0.4, 0.8), facecolors=color[n], edgecolor="none")
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels([f"{process.get(p, f'rank {p}')} / {thread.get((p, t), f'stream {t}')}" for p, t in lanes],
                       fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("time, ms from the first span")
    ax.set_title(f"Timeline: {os.path.basename(path)} ({len(spans)} spans)")
    ax.legend([plt.Rectangle((0, 0), 1, 1, color=color[n]) for n in names], names, fontsize=7, loc="upper left",
              bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    base = re.sub(r"(\.trace)?\.json$", "", os.path.basename(path))
    save(fig, out_dir, unique(f"timeline-{slug(base)}.png", used_names), written)


def unique(name, used):
    """A file name not yet written in this run (two configs of one name get -2, -3, ...)."""
    stem, ext = os.path.splitext(name)
    candidate, k = name, 2
    while candidate in used:
        candidate, k = f"{stem}-{k}{ext}", k + 1
    used.add(candidate)
    return candidate


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="*", help="results JSON files written by moe-bench run or simulate")
    ap.add_argument("--out", required=True, help="directory for the PNGs (created)")
    ap.add_argument("--trace", action="append", default=[], help="Chrome trace written by run --trace (repeatable)")
    a = ap.parse_args(argv)
    if not a.results and not a.trace:
        ap.error("give results files and/or --trace files")
    try:
        docs = [d for path in a.results for d in load_results(path)]
        traces = [(path, load_trace(path)) for path in a.trace]  # checked before anything is drawn
    except InputError as e:
        sys.stderr.write(f"plot_results.py: error: {e}\n")
        return 2
    if os.path.exists(a.out) and not os.path.isdir(a.out):
        sys.stderr.write(f"plot_results.py: error: --out: '{a.out}' exists and is not a directory\n")
        return 2
    os.makedirs(a.out, exist_ok=True)
    written, used = [], set()
    if docs:
        plot_throughput(docs, a.out, written)
        for label, doc in docs:
            plot_phases(label, doc, a.out, written, used)
            plot_load(label, doc, a.out, written, used)
        plot_measured_vs_simulated(docs, a.out, written)
    for path, _ in traces:
        plot_timeline(path, a.out, written, used)
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
