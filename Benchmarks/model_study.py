#!/usr/bin/env python3
r"""Model-shape studies on the demo recipe (issue 18, part 3): layer-wise scaling against uniform
blocks at equal parameters and the same wall time, and the scaling curve (the recipe trained for
5, 10, 20 and 40 minutes).

    # the variants: per-block heads and MLP widths, parameters, forward GFLOP per image
    python3 Benchmarks/model_study.py variants
    # quiet speed of each variant (alternating rounds of short runs; seconds per step, medians)
    python3 Benchmarks/model_study.py speed --out runs/study --rounds 3
    # train each variant for the same wall time (--budget seconds at its quiet speed), 3 seeds;
    # runs may share the cores (--threads 1): the curve per step does not depend on the speed
    python3 Benchmarks/model_study.py run --out runs/study --variants lws-d6 uniform-96x7 --seeds 0 1 2
    # or for the same steps (equal training FLOPs where the parameters are equal)
    python3 Benchmarks/model_study.py run --out runs/study-steps --steps 4000 --reuse runs/tta --seeds 0
    # the scaling curve: the demo recipe for N minutes at the quiet speed of uniform-d4 (or at
    # --seconds-per-step, e.g. the machine of record's 0.1493)
    python3 Benchmarks/model_study.py curve --out runs/curve --minutes 5 10 20 40 --seeds 0
    # validation mAP, zero-shot on the held-out drawings, linear probe; table + SVG; --results
    # merges the runs recorded in the repository (run folders are not kept) and records OUT's
    python3 Benchmarks/model_study.py report runs/study --results Benchmarks/results/model-study.json \
        --svg Benchmarks/results/layer-scaling.svg
    python3 Benchmarks/model_study.py report runs/curve --results Benchmarks/results/scaling-curve.json \
        --svg Benchmarks/results/scaling-curve.svg

Every run is `catlip train --config configs/demo.yaml` with the variant's `--set`s and
`run.steps` = budget / quiet seconds per step (rounded to 50; the warm-up stays the recipe's)
or `--steps`, validated every 1,000 steps (at least at the end and halfway); then `catlip eval zero-shot` on data/objects/heldout (the
logit rule's top-1 and the per-class mean of the prior rule) and `catlip eval linear-probe`
with the held-out drawings split per class (files in name order, even positions fit, odd ones
test; classes with one drawing only fit). A finished run directory is not trained again, so an
interrupted sweep continues; `uniform-d4` with the recipe's 4,000 steps is the demo itself, so a
`catlip-sN` run of Benchmarks/time_to_accuracy.py can stand in (`--reuse runs/tta`).

The geometry follows catlip's `ModelConfig.blocks` (OpenELM's rule: per block i of N,
alpha_i and beta_i linear in i / (N - 1); heads = max(1, floor(alpha_i * D / h + 0.5)), MLP width
= max(h, floor(beta_i * D / h + 0.5) * h)); FLOPs count a multiply-add as 2, the patch
embedding, every block's projections and both attention products, and the head.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import time_to_accuracy as tta  # noqa: E402

ROOT = tta.ROOT
# The recipe's fixed shape: 64 px, patch 8 (64 tokens), average pooling, no class token, and
# the vocabulary of `make data` (1,087 synsets at min-count 50).
IMAGE, PATCH, CLASSES = 64, 8, 1087

# name -> the model's training-config keys (the rest is configs/demo.yaml)
VARIANTS = {
    "uniform-d4": {"model.embed_dim": 128, "model.depth": 4, "model.num_heads": 4, "model.mlp_ratio": 4},
    "lws-d4": {"model.embed_dim": 128, "model.depth": 4, "model.layer_scaling_head_dim": 32,
               "model.layer_scaling_alpha": [0.5, 1.0], "model.layer_scaling_beta": [0.5, 4.0]},
    "lws-d6": {"model.embed_dim": 128, "model.depth": 6, "model.layer_scaling_head_dim": 32,
               "model.layer_scaling_alpha": [0.5, 1.0], "model.layer_scaling_beta": [0.5, 4.0]},
    "uniform-96x7": {"model.embed_dim": 96, "model.depth": 7, "model.num_heads": 3, "model.mlp_ratio": 4},
    "lws-96x10": {"model.embed_dim": 96, "model.depth": 10, "model.layer_scaling_head_dim": 32,
                  "model.layer_scaling_alpha": [0.5, 1.0], "model.layer_scaling_beta": [0.5, 4.0]},
}
BASELINE = "uniform-d4"
DEMO_STEPS = 4000


def blocks(v):
    """[(heads, head_dim, mlp_hidden)] per block, as catlip's ModelConfig.blocks computes them."""
    d, depth = v["model.embed_dim"], v["model.depth"]
    if "model.layer_scaling_head_dim" not in v:
        heads = v["model.num_heads"]
        return [(heads, d // heads, int(v["model.mlp_ratio"] * d))] * depth
    h = v["model.layer_scaling_head_dim"]
    a, b = v["model.layer_scaling_alpha"], v["model.layer_scaling_beta"]
    out = []
    for i in range(depth):
        t = i / (depth - 1) if depth > 1 else 0.0
        alpha, beta = a[0] + (a[1] - a[0]) * t, b[0] + (b[1] - b[0]) * t
        heads = max(1, math.floor(alpha * d / h + 0.5))
        hidden = max(h, math.floor(beta * d / h + 0.5) * h)
        out.append((heads, h, hidden))
    return out


def shape(v):
    """(parameters, forward GFLOP per image) of a variant."""
    d, tokens = v["model.embed_dim"], (IMAGE // PATCH) ** 2
    params = 3 * PATCH * PATCH * d + d + tokens * d + 2 * d + d * CLASSES + CLASSES
    flops = 2 * tokens * 3 * PATCH * PATCH * d + 2 * d * CLASSES
    for heads, hd, hidden in blocks(v):
        width = heads * hd
        params += 4 * d + d * 3 * width + 3 * width + width * d + d + d * hidden + hidden + hidden * d + d
        flops += 2 * tokens * (d * 3 * width + width * d + 2 * d * hidden) + 2 * 2 * tokens * tokens * width
    return params, flops / 1e9


def sets(v):
    """`--set key=value` arguments for a variant (pairs as YAML flow lists)."""
    out = []
    for key, value in v.items():
        text = "[" + ", ".join(str(x) for x in value) + "]" if isinstance(value, list) else str(value)
        out += ["--set", f"{key}={text}"]
    return out


def catlip_binary():
    return os.environ.get("CATLIP", os.path.join(ROOT, ".build/release/catlip"))


def command_variants(args):
    base = shape(VARIANTS[BASELINE])
    print(f"{'variant':14s} {'params':>9s} {'x base':>7s} {'GFLOP/img':>10s} {'x base':>7s}  heads / MLP width per block")
    for name, v in VARIANTS.items():
        p, f = shape(v)
        geo = blocks(v)
        print(f"{name:14s} {p:9d} {p / base[0]:7.3f} {f:10.4f} {f / base[1]:7.3f}  "
              f"{[g[0] for g in geo]} / {[g[2] for g in geo]}")


def command_speed(args):
    results = {name: [] for name in args.variants}
    for round_ in range(args.rounds):
        order = args.variants if round_ % 2 == 0 else list(reversed(args.variants))
        for name in order:
            directory = os.path.join(args.out, f"speed-{name}-r{round_}")
            subprocess.call(["rm", "-rf", directory])
            cmd = [catlip_binary(), "train", "--config", args.config, "--set", f"run.dir={directory}",
                   "--set", f"run.steps={args.steps}", "--set", "run.eval_every=0",
                   "--set", "run.checkpoint_every=0"] + sets(VARIANTS[name])
            os.makedirs(args.out, exist_ok=True)
            with open(directory + ".log", "w") as log:
                if subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT) != 0:
                    sys.exit(f"{' '.join(cmd)} failed (see {directory}.log)")
            sps = tta.seconds_per_step(directory, args.skip)
            results[name].append(sps)
            print(f"{name} round {round_}: {sps * 1000:.1f} ms/step", flush=True)
    path = os.path.join(args.out, "speed.json")
    summary = json.load(open(path)) if os.path.exists(path) else {}
    for name, r in results.items():
        summary[name] = {"seconds_per_step": r, "median": statistics.median(r)}
    summary["_conditions"] = {"steps": args.steps, "skip": args.skip, "load_avg_end": os.getloadavg()}
    with open(path, "w") as f:
        json.dump(summary, f, indent=1)
    for name in args.variants:
        print(f"{name}: median {summary[name]['median'] * 1000:.1f} ms/step over {args.rounds} rounds")


def speeds(out):
    path = os.path.join(out, "speed.json")
    if not os.path.exists(path):
        sys.exit(f"{path}: run `speed` first (quiet seconds per step of each variant)")
    return json.load(open(path))


def probe_split(heldout, out):
    """Two manifests of the held-out drawings: per class, even positions fit and odd ones test."""
    fit, test = [], []
    for cls in sorted(os.listdir(heldout)):
        folder = os.path.join(heldout, cls)
        if not os.path.isdir(folder):
            continue
        files = sorted(f for f in os.listdir(folder) if not f.startswith("."))
        for i, f in enumerate(files):
            (fit if i % 2 == 0 or len(files) == 1 else test).append(f"{os.path.abspath(os.path.join(folder, f))}\t{cls}\n")
    paths = os.path.join(out, "probe-fit.tsv"), os.path.join(out, "probe-test.tsv")
    for path, rows in zip(paths, (fit, test)):
        with open(path, "w") as f:
            f.writelines(rows)
    return paths


def json_lines(text):
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                pass


def evaluate(directory, heldout, probe, threads):
    """Zero-shot and linear probe of a finished run's model into DIRECTORY/study.json."""
    path = os.path.join(directory, "study.json")
    if os.path.exists(path):
        return json.load(open(path))
    model = os.path.join(directory, "model")
    zs = subprocess.run([catlip_binary(), "eval", "zero-shot", "--model", model, "--data", heldout,
                         "--threads", str(threads)], capture_output=True, text=True, cwd=ROOT)
    if zs.returncode != 0:
        sys.exit(f"zero-shot of {model} failed: {zs.stderr[-2000:]}")
    rules = {r["rule"]: r for r in json_lines(zs.stdout) if "rule" in r}
    lp = subprocess.run([catlip_binary(), "eval", "linear-probe", "--model", model, "--train", probe[0],
                         "--val", probe[1], "--threads", str(threads)], capture_output=True, text=True, cwd=ROOT)
    probes = [r for r in json_lines(lp.stdout) if "val_top1" in r]
    if lp.returncode != 0 or not probes:
        sys.exit(f"linear probe of {model} failed: {lp.stderr[-2000:]}")
    curve = tta.read_curve(directory)
    result = {"val_map": curve[-1][1], "steps": curve[-1][0], "curve": curve,
              "zero_shot_top1": rules["logit"]["top1"], "zero_shot_top5": rules["logit"]["top_k"],
              "zero_shot_prior_mean_per_class": rules["prior"]["mean_per_class"],
              "linear_probe_top1": probes[-1]["val_top1"]}
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    return result


def train(directory, steps, seed, extra, args):
    if tta.finished(directory):
        return
    if os.path.exists(os.path.join(directory, "config.yaml")):
        cmd = [catlip_binary(), "train", "--resume", directory]
    else:
        cmd = [catlip_binary(), "train", "--config", args.config, "--set", f"run.dir={directory}",
               "--set", f"run.seed={seed}", "--set", f"run.steps={steps}",
               "--set", f"run.eval_every={min(1000, steps // 2)}", "--set", f"run.threads={args.threads}",
               "--set", f"data.threads={args.threads}"] + extra
    print("+", " ".join(cmd), flush=True)
    with open(directory + ".log", "w") as log:
        if subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT) != 0:
            sys.exit(f"{' '.join(cmd)} failed (see {directory}.log)")


def command_run(args):
    if args.steps:
        speed, budget = None, None
    else:
        speed = speeds(args.out)
        budget = args.budget or DEMO_STEPS * speed[BASELINE]["median"]
    os.makedirs(args.out, exist_ok=True)
    probe = probe_split(args.heldout, args.out)
    for seed in args.seeds:
        for name in args.variants:
            directory = os.path.join(args.out, f"{name}{'+' + args.tag if args.tag else ''}-s{seed}")
            reused = os.path.join(args.reuse, f"catlip-s{seed}") if args.reuse else None
            demo_length = args.steps == DEMO_STEPS or (not args.steps and not args.budget)
            if name == BASELINE and demo_length and not args.set and reused and tta.finished(reused) and not os.path.exists(directory):
                os.symlink(os.path.abspath(reused), directory)
            if args.steps:
                steps = args.steps
            else:
                steps = max(50, int(round(budget / speed[name]["median"] / 50)) * 50)
            train(directory, steps, seed, sets(VARIANTS[name]) + sum((["--set", x] for x in args.set), []), args)
            r = evaluate(directory, args.heldout, probe, args.threads)
            print(f"{name} seed {seed}: {r['steps']} steps, mAP {r['val_map']:.4f}, zero-shot {r['zero_shot_top1']:.4f}, "
                  f"probe {r['linear_probe_top1']}", flush=True)


def command_curve(args):
    per_step = args.seconds_per_step or speeds(args.speed_from)[BASELINE]["median"]
    os.makedirs(args.out, exist_ok=True)
    probe = probe_split(args.heldout, args.out)
    for seed in args.seeds:
        for minutes in args.minutes:
            steps = max(50, int(round(minutes * 60 / per_step / 50)) * 50)
            directory = os.path.join(args.out, f"min{minutes:g}-s{seed}")
            train(directory, steps, seed, [], args)
            r = evaluate(directory, args.heldout, probe, args.threads)
            print(f"{minutes:g} min seed {seed}: {steps} steps, mAP {r['val_map']:.4f}, "
                  f"zero-shot {r['zero_shot_top1']:.4f}", flush=True)


def collect(outs, results=None):
    """{group: {seed: summary}}: the runs recorded in RESULTS (a JSON file kept in the repository,
    since run folders are not), then the evaluated runs under each folder of OUTS (which replace a
    recorded row of the same group and seed); with RESULTS, the merged rows are written back to it."""
    rows = {}
    recorded = json.load(open(results)) if results and os.path.exists(results) else {
        "about": "One row per finished run of Benchmarks/model_study.py (run folders are not kept).", "runs": []}
    for r in recorded["runs"]:
        rows.setdefault(r["group"], {})[r["seed"]] = r
    for out, name in [(o, n) for o in outs if os.path.isdir(o) for n in sorted(os.listdir(o))]:
        path = os.path.join(out, name, "study.json")
        if "-s" in name and os.path.exists(path):
            group, _, seed = name.rpartition("-s")
            r = json.load(open(path))
            summary = {"group": group, "seed": int(seed), "steps": r["steps"], "val_map": r["val_map"],
                       "zero_shot_top1": r["zero_shot_top1"], "linear_probe_top1": r["linear_probe_top1"],
                       "measured": time.strftime("%Y-%m-%d %H:%M UTC ", time.gmtime(os.path.getmtime(path)))
                       + f"{out}/{name}"}
            if "zero_shot_top5" in r:
                summary["zero_shot_top5"] = r["zero_shot_top5"]
            rows.setdefault(group, {})[int(seed)] = summary
    if results:
        runs = [rows[g][s] for g in sorted(rows) for s in sorted(rows[g])]
        with open(results, "w") as f:
            json.dump({"about": recorded["about"], "runs": runs}, f, indent=1)
            f.write("\n")
    return rows


def svg(rows, path, title):
    metrics = [("val_map", "validation mAP"), ("zero_shot_top1", "zero-shot top-1"),
               ("linear_probe_top1", "linear probe top-1")]
    groups = list(rows)
    width, height, margin = 320 * len(metrics), 360, 50
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">{title}</text>']
    for k, (key, label) in enumerate(metrics):
        x0, y0, w, h = 320 * k + margin, height - 90, 320 - margin - 10, height - 90 - 40
        values = [r[key] for g in groups for r in rows[g].values() if r.get(key) is not None]
        top = max(values) * 1.15 if values else 1
        out.append(f'<rect x="{x0}" y="40" width="{w}" height="{h}" fill="none" stroke="#888"/>')
        out.append(f'<text x="{x0 + w / 2}" y="{height - 10}" text-anchor="middle">{label}</text>')
        for i in range(5):
            v = top * i / 4
            out.append(f'<text x="{x0 - 4}" y="{y0 - h * i / 4 + 4:.1f}" text-anchor="end">{v:.3f}</text>')
        for j, g in enumerate(groups):
            cx = x0 + w * (j + 0.5) / len(groups)
            vals = [r[key] for r in rows[g].values() if r.get(key) is not None]
            for v in vals:
                out.append(f'<circle cx="{cx:.1f}" cy="{y0 - h * v / top:.1f}" r="3" fill="#1f77b4" fill-opacity="0.6"/>')
            if vals:
                m = statistics.median(vals)
                out.append(f'<line x1="{cx - 12:.1f}" x2="{cx + 12:.1f}" y1="{y0 - h * m / top:.1f}" y2="{y0 - h * m / top:.1f}" stroke="#d62728" stroke-width="2"/>')
            out.append(f'<text x="{cx:.1f}" y="{y0 + 14}" text-anchor="end" transform="rotate(-35 {cx:.1f} {y0 + 14})">{g}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def curve_svg(rows, path, title):
    """Validation mAP and zero-shot top-1 against training compute (log scale), one line per seed."""
    metrics = [("val_map", "validation mAP"), ("zero_shot_top1", "zero-shot top-1")]
    points = {}
    for g, seeds in rows.items():
        if g.startswith("min"):
            for seed, r in seeds.items():
                points.setdefault(seed, []).append((training_pflop(r["steps"]), dict(r, minutes=g[3:])))
    width, height, margin = 400 * len(metrics), 340, 56
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">{title}</text>']
    xs = [x for p in points.values() for x, _ in p]
    lo, hi = math.log10(min(xs)) - 0.1, math.log10(max(xs)) + 0.16
    for k, (key, label) in enumerate(metrics):
        x0, y0, w, h = 400 * k + margin, height - 60, 400 - margin - 14, height - 60 - 40
        top = max(r[key] for p in points.values() for _, r in p) * 1.15
        out.append(f'<rect x="{x0}" y="40" width="{w}" height="{h}" fill="none" stroke="#888"/>')
        out.append(f'<text x="{x0 + w / 2}" y="{height - 10}" text-anchor="middle">{label} against training PFLOP (log scale)</text>')
        for i in range(5):
            v = top * i / 4
            out.append(f'<text x="{x0 - 4}" y="{y0 - h * i / 4 + 4:.1f}" text-anchor="end">{v:.3f}</text>')
        for v in [m * 10 ** e for e in range(math.floor(lo), math.ceil(hi) + 1) for m in (1, 2, 5)]:
            if lo <= math.log10(v) <= hi:
                cx = x0 + w * (math.log10(v) - lo) / (hi - lo)
                out.append(f'<text x="{cx:.1f}" y="{y0 + 14}" text-anchor="middle">{v:g}</text>')
        for seed, p in sorted(points.items()):
            p.sort(key=lambda t: t[0])
            xy = [(x0 + w * (math.log10(x) - lo) / (hi - lo), y0 - h * r[key] / top) for x, r in p]
            out.append('<polyline fill="none" stroke="#1f77b4" stroke-opacity="0.7" points="'
                       + " ".join(f"{a:.1f},{b:.1f}" for a, b in xy) + '"/>')
            for (a, b), (_, r) in zip(xy, p):
                out.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="#1f77b4"/>')
                out.append(f'<text x="{a:.1f}" y="{b - 7:.1f}" text-anchor="middle" font-size="9">{r["minutes"]} min: {r["steps"]} steps</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def training_pflop(steps, variant=BASELINE, batch=64):
    """Training compute of a run: forward + backward = 3 forward passes per image."""
    return 3 * shape(VARIANTS[variant])[1] * 1e9 * batch * steps / 1e15


def command_report(args):
    rows = collect(args.out, args.results)
    order = list(VARIANTS)  # variants in their table order, tagged experiments after their base
    def rank(g):
        base = g.partition("+")[0]
        return (order.index(base) if base in order else len(order), "+" in g, float(g[3:]) if g.startswith("min") else 0, g)
    rows = {g: rows[g] for g in sorted(rows, key=rank)}
    if not rows:
        sys.exit(f"{' '.join(args.out)}: no evaluated run")
    print(f"{'run':20s} {'seeds':>5s} {'steps':>6s} {'params':>9s}  {'val mAP (median [min, max])':30s} "
          f"{'zero-shot top-1':24s} {'linear probe top-1':24s}")
    for g, seeds in rows.items():
        def cell(key):
            vals = [r[key] for r in seeds.values() if r.get(key) is not None]
            return f"{statistics.median(vals):.4f} [{min(vals):.4f}, {max(vals):.4f}]" if vals else "-"
        params = shape(VARIANTS[g.partition("+")[0]])[0] if g.partition("+")[0] in VARIANTS else "-"
        steps = statistics.median(r["steps"] for r in seeds.values())
        print(f"{g:20s} {len(seeds):5d} {steps:6.0f} {params!s:>9s}  {cell('val_map'):30s} "
              f"{cell('zero_shot_top1'):24s} {cell('linear_probe_top1'):24s}")
    if args.svg:
        curve = all(g.startswith("min") for g in rows)
        (curve_svg if curve else svg)(rows, args.svg, args.title)
        print(f"wrote {args.svg}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("variants")
    s = sub.add_parser("speed")
    s.add_argument("--out", required=True)
    s.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--steps", type=int, default=300)
    s.add_argument("--skip", type=int, default=50, help="steps left out of the timing (warm-up)")
    s.add_argument("--config", default="configs/demo.yaml")
    for name in ("run", "curve"):
        r = sub.add_parser(name)
        r.add_argument("--out", required=True)
        r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
        r.add_argument("--config", default="configs/demo.yaml")
        r.add_argument("--threads", type=int, default=2, help="run.threads and data.threads of each run")
        r.add_argument("--heldout", default="data/objects/heldout")
    run = sub.choices["run"]
    run.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    run.add_argument("--budget", type=float, help="seconds of training per run (default: the demo's 4,000 "
                     "steps at uniform-d4's quiet speed)")
    run.add_argument("--steps", type=int, help="the same steps for every variant instead of the same "
                     "wall time (equal training FLOPs where parameters are equal); needs no `speed`")
    run.add_argument("--set", action="append", default=[], help="extra catlip --set key=value (repeatable), "
                     "e.g. another vocabulary; name the experiment with --tag")
    run.add_argument("--tag", help="run directories are VARIANT+TAG-sN")
    run.add_argument("--reuse", help="a time_to_accuracy.py folder whose catlip-sN runs are uniform-d4's")
    curve = sub.choices["curve"]
    curve.add_argument("--minutes", type=float, nargs="+", default=[5, 10, 20, 40])
    curve.add_argument("--speed-from", default="runs/study", help="folder of a `speed` run (uniform-d4)")
    curve.add_argument("--seconds-per-step", type=float, help="the demo's quiet seconds per step instead "
                       "(e.g. catlip's median from time_to_accuracy.py throughput)")
    p = sub.add_parser("report")
    p.add_argument("out", nargs="+", help="folders of runs (`run` or `curve` outputs)")
    p.add_argument("--svg", help="the plot: a strip per variant, or (runs of `curve` only) metrics against compute")
    p.add_argument("--results", help="JSON file of recorded runs to merge with OUT's and update (run folders "
                   "are not kept: Benchmarks/results/model-study.json, scaling-curve.json)")
    p.add_argument("--title", default="Layer-wise scaling vs uniform blocks, demo recipe, same wall time")
    args = ap.parse_args()
    {"variants": command_variants, "speed": command_speed, "run": command_run, "curve": command_curve,
     "report": command_report}[args.command](args)


if __name__ == "__main__":
    main()
