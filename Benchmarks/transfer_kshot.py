#!/usr/bin/env python3
"""k-shot fine-tuning of a pretrained catlip model on an ImageFolder, Transfer Init against a
random head, a linear probe and the same model trained from scratch (issue 20's comparison).

    python3 Benchmarks/transfer_kshot.py --catlip .build/release/catlip --model runs/demo/model \
        --data data/objects/heldout --out /tmp/kshot [--steps 300] [--seeds 0]

The folder's classes with at least two images are split per class, alternating files: the even
ones train (k = 1: the first only; k = all: every even one), the odd ones test. Each setting is
`catlip train --config configs/finetune-demo.yaml` with --set overrides; the test top-1/top-5
come from the run's summary.json. Prints a table (and writes OUT/kshot.json).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--catlip", required=True)
ap.add_argument("--model", required=True)
ap.add_argument("--data", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--steps", type=int, default=300)
ap.add_argument("--seeds", default="0")
ap.add_argument("--shots", default="1,all")
opts = ap.parse_args()

images = (".png", ".jpg", ".jpeg")
classes = []
for c in sorted(os.listdir(opts.data)):
    d = os.path.join(opts.data, c)
    if os.path.isdir(d):
        files = sorted(f for f in os.listdir(d) if f.lower().endswith(images))
        if len(files) >= 2:
            classes.append((c, files))


def split(name, shots):
    root = os.path.join(opts.out, name)
    shutil.rmtree(root, ignore_errors=True)
    for c, files in classes:
        if name == "test":
            chosen = files[1::2]
        else:
            chosen = files[0::2] if shots == "all" else files[0::2][: int(shots)]
        os.makedirs(os.path.join(root, c))
        for f in chosen:
            shutil.copy(os.path.join(opts.data, c, f), os.path.join(root, c, f))
    return root


test = split("test", None)
settings = [
    ("transfer init", ["model.head_init=transfer"]),
    ("random head", ["model.head_init=random"]),
    ("linear probe (random head, frozen backbone)", ["model.head_init=random", "optim.freeze=backbone", "optim.lr=3.0e-3"]),
    ("from scratch", ["model.init=", "model.head_init=random"]),
]
rows = []
for shots in opts.shots.split(","):
    train = split("train-" + shots, shots)
    for name, sets in settings:
        for seed in opts.seeds.split(","):
            run = os.path.join(opts.out, "runs", f"{shots}-{name.split()[0]}-{seed}")
            shutil.rmtree(run, ignore_errors=True)
            args = [opts.catlip, "train", "--config", "configs/finetune-demo.yaml", "--set", f"run.dir={run}",
                    "--set", f"data.train={train}", "--set", f"data.val={test}", "--set", f"model.init={opts.model}",
                    "--set", f"run.steps={opts.steps}", "--set", f"run.seed={seed}", "--set", "run.eval_every=0"]
            for s in sets:
                args += ["--set", s]
            done = subprocess.run(args, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{name}: {done.stderr[-2000:]}")
            summary = json.load(open(os.path.join(run, "summary.json")))
            rows.append({"shots": shots, "setting": name, "seed": int(seed), "top1": summary["val_top1"],
                         "top5": summary["val_top5"], "seconds": summary["train_seconds"]})
            print(f"{shots:>4} shots  {name:<45} seed {seed}  top-1 {summary['val_top1']:.4f}  "
                  f"top-5 {summary['val_top5']:.4f}  {summary['train_seconds']:.0f} s", flush=True)
json.dump({"classes": len(classes), "test_images": sum(len(f[1::2]) for _, f in classes), "steps": opts.steps,
           "rows": rows}, open(os.path.join(opts.out, "kshot.json"), "w"), indent=1)
