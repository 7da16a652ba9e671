"""A model directory written by catlip, loaded into timm, gives catlip's embeddings (by hand).

    catlip bench infer --image-size 224 --patch 16 --depth 12 --batch 32 --save-model M
    # set M/config.json's pretrained_cfg.crop_pct to 1.0, then, with IMG* of exactly 224 x 224:
    catlip embed --model M --format npy --out ours.npy IMG1.png IMG2.png ...
    /opt/catlip-peers/bin/python Benchmarks/peers/check_timm_embed.py M ours.npy IMG1.png ...

The images must have the model's input size and crop_pct must be 1, so that the eval transform
is the identity on both sides apart from mean/std (resizing differs between Pillow and catlip
by design; this checks the model, not the preprocessing). timm's VisionTransformer is built
from config.json's model_args, loaded from model.safetensors with strict=True, and its
pre-logits (forward_head(pre_logits=True)) are compared with catlip's rows. Prints one JSON
line; exits 1 when the largest difference exceeds 1e-5 relative to the largest value.
Not run in CI (needs torch and timm from pip, see BENCHMARKS.md).
"""

import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# (zeroshot_torch applies the torchvision workaround before importing timm)
from zeroshot_torch import load_model  # noqa: E402

import timm  # noqa: E402
from PIL import Image  # noqa: E402


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    directory, ours_path, paths = argv[0], argv[1], argv[2:]
    cfg = json.load(open(os.path.join(directory, "config.json")))
    a, pre = cfg["model_args"], cfg["pretrained_cfg"]
    size = a["img_size"]
    if pre.get("crop_pct", 1.0) != 1.0:
        print(f"{directory}/config.json: set pretrained_cfg.crop_pct to 1.0 for this check",
              file=sys.stderr)
        return 2
    model, _ = load_model(directory)  # its eval transform unused: identical tensors instead
    mean = torch.tensor(pre["mean"]).view(3, 1, 1)
    std = torch.tensor(pre["std"]).view(3, 1, 1)
    batch = []
    for p in paths:
        img = Image.open(p).convert("RGB")
        if img.size != (size, size):
            print(f"{p}: {img.size[0]} x {img.size[1]}, the model needs {size} x {size}",
                  file=sys.stderr)
            return 2
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)
        batch.append((x - mean) / std)
    with torch.no_grad():
        theirs = model.forward_head(model.forward_features(torch.stack(batch)),
                                    pre_logits=True).numpy()
    ours = np.load(ours_path)
    if ours.shape != theirs.shape:
        print(f"{ours_path}: shape {ours.shape}, timm gives {theirs.shape}", file=sys.stderr)
        return 1
    diff = float(np.abs(ours - theirs).max())
    scale = float(np.abs(theirs).max())
    ok = diff <= 1e-5 * max(scale, 1.0)
    print(json.dumps({"check": "ok" if ok else "MISMATCH", "timm": timm.__version__,
                      "images": len(paths), "max_abs_diff": diff, "max_abs": scale}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
