#!/usr/bin/env python3
r"""Time to accuracy: catlip against the PyTorch + timm peer on the same recipe (issue 18).

    # train (by hand, on a quiet machine: each run takes 10-20 minutes on 2 cores)
    python3 Benchmarks/time_to_accuracy.py run --out runs/tta --seeds 0 1 2
    # quiet speed of both, alternating rounds of 400-step runs (seconds per step, medians)
    python3 Benchmarks/time_to_accuracy.py throughput --out runs/tta
    # tables and an SVG from whatever runs are complete
    python3 Benchmarks/time_to_accuracy.py report runs/tta --svg runs/tta/time-to-accuracy.svg

`run` trains the recipe (--config, configs/demo.yaml by default) with `catlip train` and with
Benchmarks/peers/train_torch.py (--peer-python, /opt/catlip-peers/bin/python), one after the
other, alternating which goes first per seed, validating every --eval-every steps; a run whose
directory already holds a finished run is skipped, so an interrupted sweep continues. Extra
`--set key=value` go to catlip only (an experiment), `--peer-arg` to the peer only; --systems
picks which to run. Runs may share the machine (--threads 1 each, say: the learning curve per
step does not depend on the speed); their wall times then mean nothing, and `throughput`
measures the speeds instead, which `report` multiplies with the steps to the target.

`report` reads every OUT/<system>-s<seed>/metrics.jsonl and prints, per system and validation
step: the median, min and max validation mAP over the seeds and the median training time
(wall-clock seconds from the first step, validation excluded); then the target (the PyTorch
runs' median final mAP), the steps and time at which each system's median curve reaches it
(linear between validations), the ratio, and the issue's two bars; then the steps (and minutes
at the quiet speeds of `throughput`) each system needs for every system's median final mAP. The SVG plots mAP against
training minutes and against steps (median line, min-max band per system).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLORS = {"catlip": "#d62728", "torch": "#1f77b4"}


def run_dir(out, system, seed):
    return os.path.join(out, f"{system}-s{seed}")


def finished(directory):
    path = os.path.join(directory, "metrics.jsonl")
    if os.path.exists(os.path.join(directory, "summary.json")):
        return True
    if not os.path.exists(path):
        return False
    with open(path) as f:
        return any('"done": true' in line for line in f)


def command_run(args):
    catlip = os.environ.get("CATLIP", os.path.join(ROOT, ".build/release/catlip"))
    for seed in args.seeds:
        systems = list(args.systems)
        if seed % 2 == 1:
            systems.reverse()
        for system in systems:
            directory = run_dir(args.out, system, seed)
            if finished(directory):
                print(f"{directory}: finished, skipped", flush=True)
                continue
            if system == "catlip":
                if os.path.exists(os.path.join(directory, "config.yaml")):
                    cmd = [catlip, "train", "--resume", directory]
                else:
                    cmd = [catlip, "train", "--config", args.config, "--set", f"run.dir={directory}",
                           "--set", f"run.seed={seed}", "--set", f"run.eval_every={args.eval_every}"]
                    for s in args.set:
                        cmd += ["--set", s]
            else:
                cmd = [args.peer_python, os.path.join(ROOT, "Benchmarks/peers/train_torch.py"),
                       "--config", args.config, "--seed", str(seed), "--out", directory,
                       "--eval-every", str(args.eval_every)] + list(args.peer_arg)
            os.makedirs(args.out, exist_ok=True)
            print("+", " ".join(cmd), flush=True)
            with open(directory + ".log", "w") as log:
                status = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
            if status != 0:
                sys.exit(f"{' '.join(cmd)}: exit status {status} (see {directory}.log)")


def seconds_per_step(directory, skip):
    """Median-free speed of one run: (seconds at the last interval - at step `skip`) / steps."""
    at = {}
    with open(os.path.join(directory, "metrics.jsonl")) as f:
        for line in f:
            obj = json.loads(line) if line.strip() else {}
            if "loss" in obj and "seconds" in obj:
                at[obj["step"]] = obj["seconds"]
    last = max(at)
    return (at[last] - at[skip]) / (last - skip)


def command_throughput(args):
    """Alternating rounds of short runs of both systems on a quiet machine: seconds per step."""
    catlip = os.environ.get("CATLIP", os.path.join(ROOT, ".build/release/catlip"))
    results = {"catlip": [], "torch": []}
    for round_ in range(args.rounds):
        systems = ["catlip", "torch"] if round_ % 2 == 0 else ["torch", "catlip"]
        for system in systems:
            directory = os.path.join(args.out, f"speed-{system}-r{round_}")
            subprocess.call(["rm", "-rf", directory])
            if system == "catlip":
                cmd = [catlip, "train", "--config", args.config, "--set", f"run.dir={directory}",
                       "--set", f"run.steps={args.steps}", "--set", "run.eval_every=0",
                       "--set", "run.checkpoint_every=0"] + sum((["--set", s] for s in args.set), [])
            else:
                cmd = [args.peer_python, os.path.join(ROOT, "Benchmarks/peers/train_torch.py"),
                       "--config", args.config, "--out", directory, "--steps", str(args.steps),
                       "--eval-every", "0"] + list(args.peer_arg)
            print("+", " ".join(cmd), flush=True)
            with open(directory + ".log", "w") as log:
                if subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT) != 0:
                    sys.exit(f"{' '.join(cmd)} failed (see {directory}.log)")
            sps = seconds_per_step(directory, args.skip)
            results[system].append(sps)
            print(f"{system} round {round_}: {sps * 1000:.1f} ms/step", flush=True)
    summary = {s: {"seconds_per_step": r, "median": statistics.median(r)} for s, r in results.items()}
    summary["steps"], summary["skip"], summary["load_avg_end"] = args.steps, args.skip, os.getloadavg()
    with open(os.path.join(args.out, "throughput.json"), "w") as f:
        json.dump(summary, f, indent=1)
    for s in ("catlip", "torch"):
        print(f"{s}: median {summary[s]['median'] * 1000:.1f} ms/step over {args.rounds} rounds")
    print(f"torch / catlip: {summary['torch']['median'] / summary['catlip']['median']:.2f}x")


def read_curve(directory):
    """[(step, mAP, training seconds)] of one run, validation time excluded."""
    lines = []
    with open(os.path.join(directory, "metrics.jsonl")) as f:
        for line in f:
            line = line.strip()
            if line:
                lines.append(json.loads(line))
    seconds_at = {}  # step -> seconds of the interval line (catlip's last validation has none)
    for obj in lines:
        if "loss" in obj and "seconds" in obj:
            seconds_at[obj["step"]] = obj["seconds"]
    points, val_total = [], 0.0
    for obj in lines:
        if "val_map" not in obj:
            continue
        if "train_seconds" in obj:  # an older peer line: training time already
            t = obj["train_seconds"]
        elif "val_seconds" in obj:
            val_total += obj["val_seconds"]
            t = obj["seconds"] - val_total
        elif obj["step"] in seconds_at:
            t = seconds_at[obj["step"]] - val_total
        else:
            continue
        points.append((obj["step"], obj["val_map"], t))
    return points


def crossing(points, target, axis):
    """The first x (axis 0 = steps, 2 = seconds) where mAP reaches target, linear between points."""
    previous = (0, 0.0, 0.0)
    for p in points:
        if p[1] >= target:
            if p[1] == previous[1]:
                return p[axis]
            f = (target - previous[1]) / (p[1] - previous[1])
            return previous[axis] + f * (p[axis] - previous[axis])
        previous = p
    return None


def median_curve(seeds):
    """[(step, median mAP, median seconds)] over the seeds, at the steps every seed validated."""
    steps = sorted(set.intersection(*[set(p[0] for p in c) for c in seeds.values()]))
    rows = []
    for s in steps:
        vals = [next(p for p in c if p[0] == s) for c in seeds.values()]
        rows.append((s, statistics.median(v[1] for v in vals), statistics.median(v[2] for v in vals)))
    return rows


def load_runs(out):
    runs = {}
    for name in sorted(os.listdir(out)):
        directory = os.path.join(out, name)
        if not os.path.isdir(directory) or "-s" not in name:
            continue
        system, _, seed = name.rpartition("-s")
        if not finished(directory):
            continue
        curve = read_curve(directory)
        if curve:
            runs.setdefault(system, {})[int(seed)] = curve
    return runs


def svg_plot(runs, path, title, speed=None):
    """mAP against training minutes and against steps; with `speed` (throughput.json) the
    minutes are steps x the quiet median seconds per step instead of the runs' own clocks."""
    if speed:
        runs = {system: {seed: [(p[0], p[1], p[0] * speed[system]["median"]) for p in c] for seed, c in seeds.items()}
                for system, seeds in runs.items() if system in speed}
    width, height, margin = 1000, 420, 60
    panel = (width - 3 * margin) // 2
    everything = [p for s in runs.values() for c in s.values() for p in c]
    y_max = max(p[1] for p in everything) * 1.1
    x_max = {0: max(p[0] for p in everything), 2: max(p[2] for p in everything) / 60}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
    minutes = "minutes at the quiet speeds (steps x median s/step)" if speed else "training time (minutes, validation excluded)"
    for k, (axis, label) in enumerate([(2, minutes), (0, "optimiser steps")]):
        x0, y0 = margin + k * (panel + margin), height - margin
        sx = lambda v, a=axis: x0 + panel * (v / 60 if a == 2 else v) / x_max[a]  # noqa: E731
        sy = lambda v: y0 - (height - 2 * margin) * v / y_max  # noqa: E731
        out.append(f'<rect x="{x0}" y="{margin}" width="{panel}" height="{height - 2 * margin}" fill="none" stroke="#888"/>')
        for i in range(6):
            v = y_max * i / 5
            out.append(f'<text x="{x0 - 5}" y="{sy(v) + 4:.1f}" text-anchor="end">{v:.3f}</text>')
            xv = x_max[axis] * i / 5
            out.append(f'<text x="{x0 + panel * i / 5:.1f}" y="{y0 + 16}" text-anchor="middle">{xv:.0f}</text>')
        out.append(f'<text x="{x0 + panel / 2}" y="{y0 + 34}" text-anchor="middle">{label}</text>')
        out.append(f'<text x="{x0 - 45}" y="{margin + (height - 2 * margin) / 2}" transform="rotate(-90 {x0 - 45} {margin + (height - 2 * margin) / 2})" text-anchor="middle">validation mAP</text>')
        for system, seeds in sorted(runs.items()):
            steps = sorted(set.intersection(*[set(p[0] for p in c) for c in seeds.values()]))
            rows = []
            for s in steps:
                vals = [next(p for p in c if p[0] == s) for c in seeds.values()]
                maps = [v[1] for v in vals]
                xs = statistics.median(v[axis] for v in vals)
                rows.append((xs, min(maps), statistics.median(maps), max(maps)))
            color = COLORS.get(system, "#2ca02c")
            band = [(0, 0)] + [(r[0], r[3]) for r in rows] + [(r[0], r[1]) for r in reversed(rows)] + [(0, 0)]
            out.append('<polygon fill="{}" fill-opacity="0.18" stroke="none" points="{}"/>'.format(
                color, " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in band)))
            line = [(0, 0)] + [(r[0], r[2]) for r in rows]
            out.append('<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>'.format(
                color, " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in line)))
    for i, system in enumerate(sorted(runs)):
        color = COLORS.get(system, "#2ca02c")
        out.append(f'<rect x="{margin + 10}" y="{margin + 10 + 18 * i}" width="14" height="4" fill="{color}"/>')
        out.append(f'<text x="{margin + 30}" y="{margin + 16 + 18 * i}">{system} (median of {len(runs[system])} seeds, band min-max)</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def command_report(args):
    runs = load_runs(args.out)
    if not runs:
        sys.exit(f"{args.out}: no finished run")
    for system, seeds in sorted(runs.items()):
        print(f"{system}: seeds {sorted(seeds)}")
        steps = sorted(set.intersection(*[set(p[0] for p in c) for c in seeds.values()]))
        print("  step    median mAP  [min, max]          median minutes")
        for s in steps:
            vals = [next(p for p in c if p[0] == s) for c in seeds.values()]
            maps = [v[1] for v in vals]
            print(f"  {s:5d}   {statistics.median(maps):.4f}      [{min(maps):.4f}, {max(maps):.4f}]    "
                  f"{statistics.median(v[2] for v in vals) / 60:6.2f}")
    speed_path = os.path.join(args.out, "throughput.json")
    speed = json.load(open(speed_path)) if os.path.exists(speed_path) else None
    reference = args.reference if args.reference in runs else None
    if reference:
        finals = [c[-1][1] for c in runs[reference].values()]
        target = statistics.median(finals)
        print(f"target: {reference}'s median final mAP {target:.4f} (seeds {min(finals):.4f}..{max(finals):.4f})")
        reached = {}
        for system, seeds in sorted(runs.items()):
            ok = [t for t in (crossing(c, target, 2) for c in seeds.values()) if t is not None]
            curve = median_curve(seeds)
            med = crossing(curve, target, 2) or float("inf")
            reached[system] = med
            print(f"  {system}: reaches it in {len(ok)}/{len(seeds)} seeds; the median curve at "
                  f"{(crossing(curve, target, 0) or float('inf')):.0f} steps, {med / 60:.2f} min of its runs' time")
        if speed:
            print("  at the quiet speeds of throughput.json (steps to target x median seconds per step):")
            for system, seeds in sorted(runs.items()):
                steps = crossing(median_curve(seeds), target, 0) or float("inf")
                reached[system] = steps * speed[system]["median"]
                print(f"  {system}: {steps:.0f} steps x {speed[system]['median'] * 1000:.1f} ms = {reached[system] / 60:.2f} min")
        for system in runs:
            if system == reference:
                continue
            ratio = reached[system] / reached[reference]
            finals_s = [c[-1][1] for c in runs[system].values()]
            print(f"  {system} / {reference} time to target: {ratio:.2f} (bar: <= 0.67: {'met' if ratio <= 0.67 else 'not met'}); "
                  f"{system} median final {statistics.median(finals_s):.4f} vs {reference} seeds "
                  f"[{min(finals):.4f}, {max(finals):.4f}] (bar: within or above: "
                  f"{'met' if statistics.median(finals_s) >= min(finals) else 'not met'})")
    # the other way round: how long each system takes to reach each other system's final mAP
    for target_system, seeds in sorted(runs.items()):
        target = statistics.median(c[-1][1] for c in seeds.values())
        cells = []
        for system, s in sorted(runs.items()):
            steps = crossing(median_curve(s), target, 0) or float("inf")
            cell = f"{system} {steps:.0f} steps"
            if speed and system in speed:
                cell += f" = {steps * speed[system]['median'] / 60:.2f} min"
            cells.append(cell)
        print(f"to {target_system}'s median final mAP {target:.4f}: " + "; ".join(cells))
    if args.svg:
        svg_plot(runs, args.svg, args.title, speed)
        print(f"wrote {args.svg}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--systems", nargs="+", default=["catlip", "torch"], choices=["catlip", "torch"])
    r.add_argument("--config", default="configs/demo.yaml")
    r.add_argument("--eval-every", type=int, default=500)
    r.add_argument("--peer-python", default="/opt/catlip-peers/bin/python")
    r.add_argument("--set", action="append", default=[], help="catlip --set key=value (repeatable)")
    r.add_argument("--peer-arg", action="append", default=[], help="argument for the peer (repeatable)")
    t = sub.add_parser("throughput")
    t.add_argument("--out", required=True)
    t.add_argument("--rounds", type=int, default=3)
    t.add_argument("--steps", type=int, default=400)
    t.add_argument("--skip", type=int, default=50, help="steps left out of the timing (warm-up)")
    t.add_argument("--config", default="configs/demo.yaml")
    t.add_argument("--peer-python", default="/opt/catlip-peers/bin/python")
    t.add_argument("--set", action="append", default=[])
    t.add_argument("--peer-arg", action="append", default=[])
    p = sub.add_parser("report")
    p.add_argument("out")
    p.add_argument("--svg")
    p.add_argument("--reference", default="torch")
    p.add_argument("--title", default="catlip vs PyTorch + timm: validation mAP, demo recipe")
    args = ap.parse_args()
    {"run": command_run, "throughput": command_throughput, "report": command_report}[args.command](args)


if __name__ == "__main__":
    main()
