#!/usr/bin/env python3
r"""PyTorch + timm peer for `catlip train` fine-tuning (issue 20's speed and learning bars).

Runs the fine-tune that `catlip train --config configs/finetune-demo.yaml --set ...` runs, the
way a timm user writes it (timm's train.py, reduced to one process on a CPU), from the same YAML
preset and the same `--set section.key=value` overrides, and prints one JSON line on stdout:

    PY=/opt/catlip-peers/bin/python
    $PY Benchmarks/peers/finetune_timm.py --config configs/finetune-demo.yaml \
        --set data.train=/tmp/ft/train --set data.val=/tmp/ft/val \
        --set model.init=runs/demo/model --set model.head_init=random \
        --set run.steps=300 --set run.seed=0 [--timing-warmup 5] [--out DIR]

    {"peer": "timm-finetune", "images_per_s": ..., "train_seconds": ..., "val_top1": ...,
     "val_top5": ..., ...}

Benchmarks/finetune_vs_timm.sh runs it back to back with catlip; the figures go in BENCHMARKS.md.
Progress goes to stderr. Keys absent from the preset take catlip's defaults (`catlip train
--list-keys` of catlip 0.19, copied into DEFAULTS below), so that both sides resolve the same
configuration; the JSON line's "config" holds every key this script used (the driver compares it
with catlip's resolved config.yaml).

What it does, per key (catlip's meaning in Sources/Training/TrainConfigKeys.swift):
  model      timm.models.vision_transformer.VisionTransformer(img_size=data.image_size,
             patch_size, embed_dim, depth, num_heads, mlp_ratio, qkv_bias, class_token,
             global_pool, num_classes=the training classes, drop_path_rate=model.drop_path_rate).
             The demo: 64 px, patch 8, dim 128, depth 4, 4 heads, avg pooling (fc_norm), no class
             token; ViT-Ti/16 (vit_tiny_patch16_224's layout): 224 px, patch 16, dim 192, depth 12,
             3 heads, class token, token pooling.
  model.init a model directory in timm's hub layout (config.json + model.safetensors in timm's
             names, as catlip writes it), loaded with safetensors: every tensor but head.*, its
             model_args checked against the configured architecture, pos_embed resampled with
             timm's resample_abs_pos_embed when the image size differs (timm's
             checkpoint_filter_fn does the same). "" = timm's own random init (from scratch).
  model.head_init  random: the new head as timm initialises it (trunc_normal std .02, bias 0);
             zero; keep (the directory's head, same class count). transfer is refused: Transfer
             Init maps class names through WordNet, which this peer does not re-implement; the
             speed and learning comparisons use random on both sides.
  data       torchvision.datasets.ImageFolder for a folder (files .png/.jpg/.jpeg; class names =
             folder names, sorted: catlip's order), or a `path<TAB>class` manifest; validation
             classes mapped through the training classes (a class missing there is an error).
             Decoding: PIL, transparent PNGs composited on white (catlip's decoder does; the
             loader of zeroshot_torch.py). Training transform: RandomResizedCrop(image_size,
             scale=data.crop_scale, ratio=data.crop_ratio, bilinear, antialiased) +
             RandomHorizontalFlip(data.flip) + ToTensor, no Normalize (catlip uses none).
             Evaluation: Resize(floor(image_size / data.eval_crop_pct)) + CenterCrop + ToTensor.
  loader     DataLoader(batch_size=data.batch_size, shuffle, drop_last=True (catlip drops the
             last partial batch too), num_workers=data.threads worker processes (catlip:
             data.threads decode threads), persistent_workers, prefetch_factor 2 (torch's
             default; catlip's data.prefetch 2 is batches ahead in total, not per worker)),
             one iterator per epoch as timm's train.py loops; torch.set_num_threads(run.threads)
             in the main process (catlip: run.threads compute threads). On the 2-core machine:
             2 compute threads + 2 decode workers on both sides.
  mixup      timm.data.Mixup(mixup_alpha=data.mixup, cutmix_alpha=data.cutmix,
             prob=data.mixup_prob, switch_prob=data.mixup_switch_prob, mode="batch",
             label_smoothing=optim.label_smoothing) applied in the main process when either
             alpha > 0, with SoftTargetCrossEntropy; otherwise LabelSmoothingCrossEntropy
             (optim.label_smoothing > 0) or CrossEntropyLoss: timm's train.py's choice.
  optimiser  timm.optim.create_optimizer_v2(model, "adamw", lr=optim.lr,
             weight_decay=optim.weight_decay, layer_decay=optim.layer_decay or None,
             betas=(optim.beta1, optim.beta2), eps=optim.eps): torch.optim.AdamW over timm's
             layer-decay groups (the groups catlip's layer_decay was checked against). Weight
             decay skips 1-D parameters on both sides; optim.embedding_decay true (catlip's
             default, corenet's habit) also decays pos_embed/cls_token, so the model's
             no_weight_decay() is emptied then; false keeps timm's {pos_embed, cls_token}.
  schedule   timm.scheduler.CosineLRScheduler(t_initial=run.steps - warmup + 1,
             lr_min=optim.min_lr, warmup_t=optim.warmup_steps, warmup_lr_init=
             optim.warmup_init_lr, warmup_prefix=True, t_in_epochs=False), step_update(i) before
             step i (0-based): exactly catlip's (corenet's) CosineSchedule, lr_scale applied per
             group by timm's scheduler as catlip applies its layer-decay scales.
  step       optim.accumulation micro-batches (loss / accumulation each), clip_grad_norm_(
             optim.clip_grad) over every parameter (0 = off), optimizer.step(); EMA
             (optim.ema_momentum > 0) as timm.utils.ModelEmaV3(decay=1 - momentum), validated in
             place of the weights as catlip exports and validates its average.
  freeze     optim.freeze=backbone: requires_grad off for everything but head.* (a linear probe).
  seeds      run.seed into torch, numpy (Mixup draws with numpy) and random, and the
             DataLoader's generator; the draws are not catlip's.

Timing (the same on both sides as Benchmarks/finetune_vs_timm.sh reads catlip): the clock runs
from before the first batch is fetched to the end of the last optimizer step, loader waits
included, validation excluded (it runs after the last step). images_per_s = images of steps
W+1..N / seconds from the end of step W to the end of step N, W = --timing-warmup (default 5):
start-up (worker processes, first allocations, page cache) falls in the first W steps.
train_seconds = the whole clock. step_ms_median: median wall time of steps W+1..N.

Not matched (named so that nobody reads more into the figures): the random draws (crops, flips,
order, Mixup, head init) differ; PIL's bilinear resize and catlip's antialiased resampler differ
in rounding; catlip has no drop path key yet (model.drop_path_rate is read here, default 0);
variable resolution (data.resolutions) and model.head_bias_prior are not implemented here
(refused when set); torch's AdamW on CPU (for-loop implementation, timm's default foreach=None);
catlip decodes in threads of its own process, this peer in DataLoader worker processes (torch's
two OpenMP threads spin-wait beside them on two cores; --set data.threads=1 tries one worker).
Epochs: one DataLoader iterator per epoch (timm's loop); catlip also restarts its loader when an
epoch runs dry, so on a small folder (157 drawings = 4 batches) both pay an epoch start every few
steps inside the timed ones.
"""

import argparse
import json
import math
import os
import random
import statistics
import sys
import time

import numpy as np
import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchvision_compat import import_torchvision  # noqa: E402

import_torchvision()
import timm  # noqa: E402
import torchvision  # noqa: E402
import torchvision.transforms as T  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from timm.data import Mixup  # noqa: E402
from timm.layers import resample_abs_pos_embed  # noqa: E402
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy  # noqa: E402
from timm.optim import create_optimizer_v2  # noqa: E402
from timm.scheduler import CosineLRScheduler  # noqa: E402
from timm.utils import ModelEmaV3  # noqa: E402

from zeroshot_torch import load_rgb  # noqa: E402  (alpha composited on white, as catlip decodes)

# catlip 0.19's defaults (`catlip train --list-keys`) for the keys this script reads.
DEFAULTS = {
    "data.train": "", "data.val": "", "data.task": "pretrain", "data.image_size": 64, "data.batch_size": 64,
    "data.threads": 2, "data.crop_scale": [0.08, 1.0], "data.crop_ratio": [0.75, 4 / 3], "data.flip": 0.5,
    "data.val_samples": 0, "data.eval_crop_pct": 0.875, "data.mixup": 0.0, "data.cutmix": 0.0,
    "data.mixup_prob": 1.0, "data.mixup_switch_prob": 0.5, "data.resolutions": [],
    "model.patch_size": 8, "model.embed_dim": 192, "model.depth": 6, "model.num_heads": 3, "model.mlp_ratio": 4.0,
    "model.global_pool": "token", "model.class_token": True, "model.qkv_bias": True,
    "model.layer_scaling_head_dim": 0, "model.init": "", "model.head_init": "random", "model.head_bias_prior": False,
    "model.drop_path_rate": 0.0,  # not a catlip key (yet): timm's --drop-path
    "optim.lr": 1e-3, "optim.min_lr": 1e-5, "optim.warmup_steps": 100, "optim.warmup_init_lr": 1e-6,
    "optim.weight_decay": 0.2, "optim.embedding_decay": True, "optim.beta1": 0.9, "optim.beta2": 0.999,
    "optim.eps": 1e-8, "optim.clip_grad": 1.0, "optim.ema_momentum": 0.0, "optim.accumulation": 1,
    "optim.label_smoothing": 0.1, "optim.layer_decay": 0.0, "optim.freeze": "none",
    "run.steps": 1000, "run.seed": 0, "run.threads": 2,
}
# catlip keys that do not change what is trained or timed here (logging, checkpoints, paths).
IGNORED = {
    "data.vocab", "data.label_mode", "data.captions", "data.prefetch", "data.shuffle_buffer", "data.max_file_mb",
    "model.layer_scaling_alpha", "model.layer_scaling_beta", "run.dir", "run.log_every", "run.checkpoint_every",
    "run.checkpoint_minutes", "run.keep_checkpoints", "run.max_bad_steps", "run.eval_every", "run.comm_timeout",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def log(message):
    print(message, file=sys.stderr, flush=True)


def resolve(config_path, sets):
    """The preset's keys over DEFAULTS, then each `section.key=value` (value read as YAML, as
    catlip reads --set). Unknown keys and features this peer lacks stop the run."""
    with open(config_path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    flat = {}
    for section, keys in raw.items():
        for key, value in (keys or {}).items():
            flat[f"{section}.{key}"] = value
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep:
            sys.exit(f"--set {item}: expected section.key=value")
        flat[key] = yaml.safe_load(text) if text.strip() else ""
    unknown = sorted(k for k in flat if k not in DEFAULTS and k not in IGNORED)
    if unknown:
        sys.exit(f"{config_path}: keys this peer does not know: {', '.join(unknown)}")
    c = dict(DEFAULTS)
    c.update({k: v for k, v in flat.items() if k in DEFAULTS})
    if c["data.task"] != "classify":
        sys.exit("data.task must be classify (this peer fine-tunes classifiers)")
    if c["data.resolutions"]:
        sys.exit("data.resolutions (variable resolution) is not implemented by this peer")
    if c["model.head_bias_prior"] or c["model.layer_scaling_head_dim"]:
        sys.exit("model.head_bias_prior / model.layer_scaling_head_dim are not implemented by this peer")
    if c["model.head_init"] == "transfer" and c["model.init"]:
        sys.exit("model.head_init=transfer needs catlip's WordNet mapper; this peer compares with "
                 "model.head_init=random (or zero, keep)")
    if c["optim.warmup_steps"] > c["run.steps"]:  # catlip refuses the same
        sys.exit(f"optim.warmup_steps: {c['optim.warmup_steps']} is more than run.steps {c['run.steps']}")
    if c["model.global_pool"] == "token" and not c["model.class_token"]:
        sys.exit("model.global_pool token needs model.class_token true")
    return c


def class_folders(root):
    """Sorted class folders of an ImageFolder that hold at least one image (catlip's list)."""
    return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))
                  and any(f.lower().endswith(IMAGE_SUFFIXES) for f in os.listdir(os.path.join(root, d))))


class Manifest(torch.utils.data.Dataset):
    """`path<TAB>class` lines (relative paths from the manifest's folder), as catlip reads them."""

    def __init__(self, path, transform, classes=None):
        base = os.path.dirname(os.path.abspath(path))
        pairs = []
        for n, line in enumerate(open(path, encoding="utf-8"), 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            p, sep, label = line.partition("\t")
            if not sep:
                sys.exit(f"{path}:{n}: expected path<TAB>class")
            pairs.append((p if os.path.isabs(p) else os.path.join(base, p), label.strip()))
        self.classes = classes or sorted({label for _, label in pairs})
        index = {c: i for i, c in enumerate(self.classes)}
        missing = sorted({label for _, label in pairs if label not in index})
        if missing:
            sys.exit(f"{path}: classes not among the training classes: {', '.join(missing[:10])}")
        self.samples = [(p, index[label]) for p, label in pairs]
        self.transform = transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        p, target = self.samples[i]
        return self.transform(load_rgb(p)), target


def open_images(path, transform, classes=None):
    """An ImageFolder (torchvision's, with catlip's decoder and suffixes) or a manifest; with
    `classes`, targets are indices into that list (the training classes)."""
    if not os.path.isdir(path):
        return Manifest(path, transform, classes)
    ds = torchvision.datasets.ImageFolder(
        path, transform=transform, loader=load_rgb, is_valid_file=lambda p: p.lower().endswith(IMAGE_SUFFIXES),
        allow_empty=True)
    own = class_folders(path)
    if classes is None:
        classes = own
    index = {c: i for i, c in enumerate(classes)}
    missing = [c for c in own if c not in index]
    if missing:
        sys.exit(f"{path}: classes not among the training classes: {', '.join(missing[:10])}")
    ds.samples = [(p, index[ds.classes[t]]) for p, t in ds.samples]
    ds.targets = [t for _, t in ds.samples]
    ds.classes, ds.class_to_idx = list(classes), index
    return ds


def build_model(c, classes):
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=c["data.image_size"], patch_size=c["model.patch_size"], num_classes=classes,
        embed_dim=c["model.embed_dim"], depth=c["model.depth"], num_heads=c["model.num_heads"],
        mlp_ratio=c["model.mlp_ratio"], qkv_bias=c["model.qkv_bias"], class_token=c["model.class_token"],
        global_pool=c["model.global_pool"], drop_path_rate=c["model.drop_path_rate"])
    directory = c["model.init"]
    if directory:
        args = json.load(open(os.path.join(directory, "config.json"), encoding="utf-8"))["model_args"]
        want = {"patch_size": c["model.patch_size"], "embed_dim": c["model.embed_dim"], "depth": c["model.depth"],
                "num_heads": c["model.num_heads"], "mlp_ratio": float(c["model.mlp_ratio"]),
                "class_token": c["model.class_token"], "global_pool": c["model.global_pool"]}
        have = {k: (float(args.get(k, 4.0)) if k == "mlp_ratio" else args.get(k)) for k in want}
        if have != want:
            sys.exit(f"model.init: {directory} is not the configured architecture (its {have}, the config {want})")
        state = load_file(os.path.join(directory, "model.safetensors"))
        prefix = 1 if c["model.class_token"] else 0
        grid = c["data.image_size"] // c["model.patch_size"]
        if state["pos_embed"].shape[1] != grid * grid + prefix:
            old = args["img_size"] // c["model.patch_size"]
            state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], new_size=[grid, grid], old_size=[old, old],
                                                        num_prefix_tokens=prefix)
            log(f"model.init: pos_embed resampled from {old}x{old} to {grid}x{grid}")
        head = c["model.head_init"]
        if head == "keep":
            if state["head.weight"].shape[0] != classes:
                sys.exit(f"model.head_init=keep: {directory} has {state['head.weight'].shape[0]} head rows, the run {classes}")
        else:
            state = {k: v for k, v in state.items() if not k.startswith("head.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("head.") for k in missing):
            sys.exit(f"model.init: {directory}: missing {missing}, unexpected {unexpected}")
        if head == "zero":
            with torch.no_grad():
                model.head.weight.zero_()
                model.head.bias.zero_()
        log(f"model.init: {directory} (head: {head})")
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="catlip train YAML preset (configs/finetune-demo.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="section.key=value", help="as catlip train --set")
    ap.add_argument("--timing-warmup", type=int, default=5, help="steps left out of images_per_s (default 5)")
    ap.add_argument("--out", help="directory for metrics.jsonl (one line per step) and result.json")
    opts = ap.parse_args()
    c = resolve(opts.config, opts.set)

    seed, threads, workers = c["run.seed"], c["run.threads"], c["data.threads"]
    steps, batch, accumulation = c["run.steps"], c["data.batch_size"], c["optim.accumulation"]
    size = c["data.image_size"]
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    if not 0 <= opts.timing_warmup < steps:
        sys.exit(f"--timing-warmup {opts.timing_warmup} must be below run.steps {steps}")

    train_tf = T.Compose([
        T.RandomResizedCrop(size, scale=tuple(c["data.crop_scale"]), ratio=tuple(c["data.crop_ratio"]),
                            interpolation=T.InterpolationMode.BILINEAR, antialias=True),
        T.RandomHorizontalFlip(c["data.flip"]),
        T.ToTensor(),
    ])
    train = open_images(c["data.train"], train_tf)
    classes = train.classes
    if len(train) < batch:
        sys.exit(f"{c['data.train']}: {len(train)} images, fewer than one batch of {batch}")
    log(f"labels: {len(train)} training images of {len(classes)} classes from {c['data.train']}")

    model = build_model(c, len(classes))
    if c["optim.freeze"] == "backbone":
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("head."))
    if c["optim.embedding_decay"]:
        model.no_weight_decay = lambda: set()  # catlip/corenet decay pos_embed and cls_token
    opt = create_optimizer_v2(
        model, "adamw", lr=c["optim.lr"], weight_decay=c["optim.weight_decay"],
        layer_decay=c["optim.layer_decay"] or None, betas=(c["optim.beta1"], c["optim.beta2"]), eps=c["optim.eps"])
    warm = c["optim.warmup_steps"]
    sched = CosineLRScheduler(
        opt, t_initial=steps - warm + 1, lr_min=c["optim.min_lr"], warmup_t=warm,
        warmup_lr_init=c["optim.warmup_init_lr"], warmup_prefix=True, t_in_epochs=False)
    ema = ModelEmaV3(model, decay=1 - c["optim.ema_momentum"]) if c["optim.ema_momentum"] > 0 else None

    mixing = c["data.mixup"] > 0 or c["data.cutmix"] > 0
    smoothing = c["optim.label_smoothing"]
    mixup = Mixup(mixup_alpha=c["data.mixup"], cutmix_alpha=c["data.cutmix"], prob=c["data.mixup_prob"],
                  switch_prob=c["data.mixup_switch_prob"], mode="batch", label_smoothing=smoothing,
                  num_classes=len(classes)) if mixing else None
    if mixing:
        criterion = SoftTargetCrossEntropy()
    elif smoothing > 0:
        criterion = LabelSmoothingCrossEntropy(smoothing=smoothing)
    else:
        criterion = torch.nn.CrossEntropyLoss()

    loader = torch.utils.data.DataLoader(
        train, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(seed))
    clip = c["optim.clip_grad"]
    metrics = None
    if opts.out:
        os.makedirs(opts.out, exist_ok=True)
        metrics = open(os.path.join(opts.out, "metrics.jsonl"), "w", encoding="utf-8")

    model.train()
    epoch, step, wait, ends = 0, 0, 0.0, []
    it = iter(loader)
    start = time.perf_counter()
    while step < steps:
        sched.step_update(num_updates=step)
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for _ in range(accumulation):
            t0 = time.perf_counter()
            try:
                images, targets = next(it)
            except StopIteration:  # an epoch ends: timm's train.py starts the next one
                epoch += 1
                it = iter(loader)
                images, targets = next(it)
            wait += time.perf_counter() - t0
            if mixup is not None:
                images, targets = mixup(images, targets)
            loss = criterion(model(images), targets)
            (loss / accumulation).backward()
            loss_sum += loss.item()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], clip if clip > 0 else float("inf")))
        opt.step()
        if ema is not None:
            ema.update(model, step=step)
        step += 1
        ends.append(time.perf_counter())
        if metrics:
            metrics.write(json.dumps({"step": step, "epoch": epoch, "loss": loss_sum / accumulation,
                                      "lr": opt.param_groups[-1]["lr"], "grad_norm": grad_norm,
                                      "seconds": round(ends[-1] - start, 4)}) + "\n")
        if step % 25 == 0 or step == steps:
            log(f"step {step}/{steps}  epoch {epoch}  loss {loss_sum / accumulation:.4f}  "
                f"{step * batch * accumulation / (ends[-1] - start):.0f} img/s")
    train_seconds = ends[-1] - start
    w = opts.timing_warmup
    timed_images = (steps - w) * batch * accumulation
    mark = ends[w - 1] if w > 0 else start
    images_per_s = timed_images / (ends[-1] - mark)
    step_s = [b - a for a, b in zip([start] + ends[:-1], ends)][w:]
    del it, loader  # stop the training workers before validation

    result = {"peer": "timm-finetune", "steps": steps, "batch_size": batch, "accumulation": accumulation,
              "timing_warmup": w, "images_per_s": round(images_per_s, 2), "train_seconds": round(train_seconds, 2),
              "step_ms_median": round(1000 * statistics.median(step_s), 2), "data_wait": round(wait / train_seconds, 4),
              "train_images": len(train), "classes": len(classes), "epochs_started": epoch + 1}
    if c["data.val"]:
        eval_tf = T.Compose([
            T.Resize(math.floor(size / c["data.eval_crop_pct"]), interpolation=T.InterpolationMode.BILINEAR),
            T.CenterCrop(size), T.ToTensor()])
        val = open_images(c["data.val"], eval_tf, classes)
        if c["data.val_samples"] > 0:
            val = torch.utils.data.Subset(val, range(min(len(val), c["data.val_samples"])))
        net = ema.module if ema is not None else model
        net.eval()
        t0 = time.perf_counter()
        top1 = top5 = 0
        k = min(5, len(classes))
        with torch.no_grad():
            for images, targets in torch.utils.data.DataLoader(val, batch_size=batch, num_workers=workers):
                best = net(images).topk(k, dim=1).indices
                top1 += int((best[:, 0] == targets).sum())
                top5 += int((best == targets[:, None]).any(dim=1).sum())
        result.update({"val_top1": top1 / len(val), "val_top5": top5 / len(val), "val_images": len(val),
                       "val_seconds": round(time.perf_counter() - t0, 2)})
    result.update({"seed": seed, "threads": threads, "workers": workers, "mixup": mixing,
                   "torch": torch.__version__, "timm": timm.__version__, "load_avg": round(os.getloadavg()[0], 2),
                   "config": c})
    if metrics:
        metrics.close()
        with open(os.path.join(opts.out, "result.json"), "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
