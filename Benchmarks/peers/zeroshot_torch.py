#!/usr/bin/env python3
r"""PyTorch peer for `catlip eval zero-shot` throughput (issue 8's benchmark).

Does what a timm user does to classify a labelled image set with a catlip model directory:
builds timm's VisionTransformer from config.json's model_args, loads model.safetensors with
strict=True, preprocesses with timm's eval transform for the model's pretrained_cfg (resize to
int(size / crop_pct), centre crop, ToTensor, mean/std), composites transparent PNGs on white
as catlip's decoder does, and runs the forward pass in batches (float32, eager, no grad),
taking the argmax over the head rows of each class. Reports images per second of the whole
loop (read + decode + preprocess + forward + scoring), median of --runs.

Run by hand, not in CI:

    PY=/opt/catlip-peers/bin/python
    $PY Benchmarks/peers/zeroshot_torch.py --model runs/demo/model --data M.tsv --threads 2

--data is a TSV manifest (path<TAB>label) or an ImageFolder, as for catlip.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
from PIL import Image
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchvision_compat import import_torchvision  # noqa: E402

import_torchvision()
import timm  # noqa: E402
import torchvision.transforms as T  # noqa: E402


def read_dataset(path):
    pairs = []
    if os.path.isdir(path):
        for c in sorted(os.listdir(path)):
            d = os.path.join(path, c)
            if os.path.isdir(d):
                for f in sorted(os.listdir(d)):
                    if f.lower().endswith((".png", ".jpg", ".jpeg")):
                        pairs.append((os.path.join(d, f), c))
    else:
        for line in open(path, encoding="utf-8"):
            p, label = line.rstrip("\n").split("\t", 1)
            pairs.append((p, label))
    return pairs


def load_rgb(path):
    im = Image.open(path)
    im.load()
    if im.mode in ("RGBA", "LA", "P", "PA") or "transparency" in im.info:
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    return im.convert("RGB")


def load_model(directory):
    """timm's VisionTransformer from a catlip model directory (config.json's model_args,
    model.safetensors loaded strict=True, eval mode) and timm's eval transform for its
    pretrained_cfg (resize to int(size / crop_pct), centre crop, ToTensor, mean/std)."""
    cfg = json.load(open(os.path.join(directory, "config.json")))
    a = cfg["model_args"]
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=a["img_size"], patch_size=a["patch_size"], num_classes=a["num_classes"],
        global_pool=a.get("global_pool", "token"), embed_dim=a["embed_dim"], depth=a["depth"],
        num_heads=a["num_heads"], mlp_ratio=a.get("mlp_ratio", 4.0), qkv_bias=a.get("qkv_bias", True),
        class_token=a.get("class_token", True))
    model.load_state_dict(load_file(os.path.join(directory, "model.safetensors")), strict=True)
    model.eval()
    p = cfg["pretrained_cfg"]
    size = p["input_size"][1]
    interp = T.InterpolationMode.BICUBIC if p.get("interpolation") == "bicubic" else T.InterpolationMode.BILINEAR
    transform = T.Compose([
        T.Resize(int(size / p.get("crop_pct", 0.875)), interpolation=interp),
        T.CenterCrop(size), T.ToTensor(), T.Normalize(p["mean"], p["std"])])
    return model, transform


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model, transform = load_model(args.model)

    pairs = read_dataset(args.data)
    # the vocabulary rows of each class: catlip eval map's routes are not re-derived here; a
    # class's first matching vocab lemma stands in (the throughput does not depend on it)
    vocab = [line.split("\t") for line in open(os.path.join(args.model, "vocab.tsv"), encoding="utf-8")]
    row_of = {}
    for i, fields in enumerate(vocab):
        for lemma in fields[2].strip().split(","):
            row_of.setdefault(lemma.replace("_", " ").lower(), i)
    classes = sorted(set(label for _, label in pairs))
    rows = torch.tensor([row_of.get(c.lower(), 0) for c in classes])

    rates = []
    for _ in range(args.runs):
        start = time.perf_counter()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(pairs), args.batch):
                chunk = pairs[i:i + args.batch]
                x = torch.stack([transform(load_rgb(path)) for path, _ in chunk])
                logits = model(x)[:, rows]
                pred = logits.argmax(dim=1)
                correct += sum(int(classes[int(k)] == label) for k, (_, label) in zip(pred, chunk))
        rates.append(len(pairs) / (time.perf_counter() - start))
    print(json.dumps({"peer": "torch", "images": len(pairs), "threads": args.threads, "batch": args.batch,
                      "images_per_s": round(statistics.median(rates), 1), "runs": [round(r, 1) for r in rates],
                      "torch": torch.__version__, "timm": timm.__version__}))


if __name__ == "__main__":
    sys.exit(main())
