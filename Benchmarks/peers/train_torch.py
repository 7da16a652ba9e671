#!/usr/bin/env python3
r"""PyTorch + timm peer for `catlip train` (time to accuracy, issue 18).

Trains a `catlip train` YAML recipe (configs/demo.yaml by default) the way a PyTorch user
would: timm's VisionTransformer, torchvision's RandomResizedCrop + RandomHorizontalFlip +
ToTensor on PIL images, a webdataset-style stream over the same tar shards (shard order
shuffled per epoch, then a shuffle buffer of `data.shuffle_buffer` samples), labels from the
same label caches (`NNNNN.tar.labels`, written by `catlip vocab cache`), BCE with logits summed
over classes and averaged over the batch (CatLIP's reduction), AdamW, corenet's warm-up +
cosine schedule per step, clip_grad_norm_, and the head bias at the class log-odds when the
recipe's `model.head_bias_prior` is on. It validates every `run.eval_every` steps on the
recipe's validation shards with the project's AP definition (scikit-learn's
average_precision_score per class, classes without a positive left out, mean over the rest)
and writes one JSON line per log interval and per validation to OUT/metrics.jsonl, as catlip
does: `seconds` since the first step, and `val_seconds` (the validation's own time) on
validation lines, so that training time excludes validation for both.

Run by hand, not in CI (it needs PyTorch):

    python3 -m venv /opt/catlip-peers
    /opt/catlip-peers/bin/pip install torch==2.13.0+cpu pillow numpy pyyaml
    /opt/catlip-peers/bin/pip install --no-deps torchvision==0.28.0 timm
    /opt/catlip-peers/bin/python Benchmarks/peers/train_torch.py --config configs/demo.yaml \
        --seed 0 --out runs/torch-s0

Knobs for the one-piece-at-a-time experiments (defaults are what a timm user gets):
  --init timm|catlip      timm's init (trunc_normal std .02 cut at +-2 absolute for Linear and
                          pos_embed, PyTorch's default for the patch conv) or catlip's (every
                          weight trunc_normal std .02 cut at +-2 std)
  --wd-groups timm|catlip timm's no-decay set (1-D parameters and pos_embed) or catlip's (1-D only)
  --shuffle buffer|full   the webdataset stream, or a full permutation of all samples per epoch
  --steps N               override run.steps (the schedule follows)
  --eval-every N          override run.eval_every (0: no validation, for speed runs)
  --dump PREFIX           append every training batch to PREFIX.images.f32 and PREFIX.targets.u8 (the
                          --replay layout), for `catlip train` to be fed this loader's batches in turn
  --init-from DIR         start from the weights of a model directory (model.safetensors in timm's
                          names, as catlip writes it) instead of this script's init: with --replay,
                          both systems then start from the same weights on the same batches
  --save-init DIR         write the starting weights (after the init and the head-bias prior) to
                          DIR/model.safetensors in timm's names, for `catlip train` to start from
  --log-every N           override run.log_every (1: a loss and gradient norm per step)
  --replay PREFIX         train on another system's batches instead of this loader's: PREFIX.images.f32
                          (steps x batch x 3 x size x size floats, CHW) and PREFIX.targets.u8 (steps x
                          batch x classes, multi-hot), as a catlip build dumps them; separates the data
                          pipeline from the training numerics

The catlip side of --replay / --init-from / --save-init is Benchmarks/peers/catlip-experiment.patch
(environment hooks in Trainer.swift, kept out of the product): apply it to a worktree, build, and
run `catlip train` with CATLIP_DUMP=PREFIX (write its batches), CATLIP_REPLAY=PREFIX (train on a
dump), CATLIP_SAVE_INIT=DIR or CATLIP_INIT_FROM=DIR (a model directory: copy config.json from a
catlip model of the same shape next to a --save-init file). BENCHMARKS.md lists the runs.
"""

import argparse
import glob
import io
import json
import math
import os
import random
import re
import struct
import sys
import tarfile
import time

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchvision_compat import import_torchvision  # noqa: E402

import_torchvision()
import timm  # noqa: E402
import torchvision.transforms as T  # noqa: E402


def expand_pattern(pattern):
    """Brace patterns as catlip reads them: `dir/{00000..00103}.tar`, `::`- or space-separated."""
    out = []
    for part in re.split(r"::|\s+", pattern.strip()):
        if not part:
            continue
        m = re.search(r"\{(\d+)\.\.(\d+)\}", part)
        if not m:
            out.append(part)
            continue
        a, b = m.group(1), m.group(2)
        for i in range(int(a), int(b) + 1):
            out.append(part[: m.start()] + str(i).zfill(len(a)) + part[m.end():])
    return out


def read_label_cache(path):
    """catlip's label cache: magic CATLIPL1, fingerprint u64, classes u32, samples u32, then per
    sample: key length u32, key, label count u32, labels u32 each."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"CATLIPL1":
        raise SystemExit(f"{path}: not a catlip label cache")
    _, classes, count = struct.unpack_from("<QII", data, 8)
    pos, table = 24, {}
    for _ in range(count):
        (n,) = struct.unpack_from("<I", data, pos)
        pos += 4
        key = data[pos: pos + n].decode()
        pos += n
        (k,) = struct.unpack_from("<I", data, pos)
        pos += 4
        table[key] = list(struct.unpack_from(f"<{k}I", data, pos))
        pos += 4 * k
    return classes, table


def shard_samples(path):
    """(key, png/jpg bytes, caption) per sample of a webdataset tar, in file order."""
    current, members = None, {}
    with tarfile.open(path, "r|") as tar:
        for info in tar:
            if not info.isfile():
                continue
            base = os.path.basename(info.name)
            key, _, ext = base.partition(".")
            key = os.path.join(os.path.dirname(info.name), key) if os.path.dirname(info.name) else key
            if current is not None and key != current:
                yield current, members
                members = {}
            current = key
            members[ext.lower()] = tar.extractfile(info).read()
    if current is not None:
        yield current, members


def sample_fields(members):
    image = next((members[e] for e in ("png", "jpg", "jpeg", "webp") if e in members), None)
    caption = members.get("txt", b"").decode("utf-8", "replace").strip()
    return image, caption


class ShardStream(torch.utils.data.IterableDataset):
    """The training stream: per epoch, shard order shuffled, then a shuffle buffer (webdataset's
    `shuffle(n)`), or a full permutation of every sample (`full`); decoding and augmentation in
    the DataLoader worker; samples without an image, a caption or labels are skipped as catlip
    skips them."""

    def __init__(self, shards, labels, size, scale, buffer, mode, seed):
        super().__init__()
        self.shards, self.labels, self.buffer, self.mode, self.seed = shards, labels, buffer, mode, seed
        self.transform = T.Compose([
            T.RandomResizedCrop(size, scale=tuple(scale), interpolation=T.InterpolationMode.BILINEAR),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
        ])

    def raw_epoch(self, epoch, rng):
        if self.mode == "full":
            everything = [(k, m) for s in self.shards for k, m in shard_samples(s)]
            rng.shuffle(everything)
            yield from everything
            return
        order = list(self.shards)
        rng.shuffle(order)
        buf = []
        for shard in order:
            for item in shard_samples(shard):
                buf.append(item)
                if len(buf) >= self.buffer:
                    j = rng.randrange(len(buf))
                    buf[j], buf[-1] = buf[-1], buf[j]
                    yield buf.pop()
        rng.shuffle(buf)
        yield from buf

    def __iter__(self):
        epoch = 0
        while True:
            rng = random.Random(self.seed * 1_000_003 + epoch)
            torch.manual_seed(self.seed * 1_000_003 + epoch + 7)
            for key, members in self.raw_epoch(epoch, rng):
                image, caption = sample_fields(members)
                labels = self.labels.get(key)
                if image is None or not caption or labels is None:
                    continue
                try:
                    img = Image.open(io.BytesIO(image)).convert("RGB")
                except Exception:
                    continue
                yield self.transform(img), torch.tensor(labels, dtype=torch.long), epoch
            epoch += 1


def collate(items):
    images = torch.stack([i[0] for i in items])
    return images, [i[1] for i in items], max(i[2] for i in items)


def multi_hot(label_lists, classes):
    t = torch.zeros(len(label_lists), classes)
    for row, labels in enumerate(label_lists):
        if len(labels):
            t[row, labels[labels < classes]] = 1
    return t


def average_precision(scores, positives):
    """scikit-learn's average_precision_score for one class (ties form one threshold)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], positives[order].astype(np.float64)
    tps = np.cumsum(y)
    fps = np.cumsum(1 - y)
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps, fps = tps[last], fps[last]
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(scores, label_lists, classes):
    positives = np.zeros((len(label_lists), classes), dtype=bool)
    for i, labels in enumerate(label_lists):
        positives[i, [c for c in labels if c < classes]] = True
    aps = [average_precision(scores[:, c], positives[:, c]) for c in range(classes) if positives[:, c].any()]
    return float(np.mean(aps)) if aps else 0.0


def load_validation(shards, labels, size, crop_pct):
    resize = int(math.floor(size / crop_pct))
    tf = T.Compose([
        T.Resize(resize, interpolation=T.InterpolationMode.BILINEAR),
        T.CenterCrop(size),
        T.ToTensor(),
    ])
    images, lists = [], []
    for shard in shards:
        for key, members in shard_samples(shard):
            image, caption = sample_fields(members)
            if image is None or not caption or key not in labels:
                continue
            images.append(tf(Image.open(io.BytesIO(image)).convert("RGB")))
            lists.append(labels[key])
    return torch.stack(images), lists


@torch.no_grad()
def validate(model, images, lists, classes, batch=256):
    model.eval()
    scores = torch.cat([model(images[i: i + batch]) for i in range(0, len(images), batch)]).numpy()
    model.train()
    return mean_average_precision(scores, lists, classes)


def catlip_init(model, seed):
    """catlip's init: every weight trunc_normal(std .02) cut at +-2 std, biases 0, norms 1/0."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        with torch.no_grad():
            if "norm" in name and name.endswith(".weight"):
                p.fill_(1)
            elif name.endswith(".bias"):
                p.zero_()
            else:
                t = torch.empty_like(p)
                torch.nn.init.trunc_normal_(t, std=0.02, a=-0.04, b=0.04, generator=g)
                p.copy_(t)


def corenet_cosine(step, o, total):
    warm = o.get("warmup_steps", 100)
    init, peak, floor = o.get("warmup_init_lr", 1e-6), o.get("lr", 1e-3), o.get("min_lr", 1e-5)
    if step < warm:
        return max(0.0, init + step * (peak - init) / warm)
    period = total - warm + 1
    return max(0.0, floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * (step - warm) / period)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--train", help="override data.train")
    ap.add_argument("--val", help="override data.val")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, help="override run.eval_every")
    ap.add_argument("--out", required=True)
    ap.add_argument("--init", choices=["timm", "catlip"], default="timm")
    ap.add_argument("--wd-groups", choices=["timm", "catlip"], default="timm")
    ap.add_argument("--shuffle", choices=["buffer", "full"], default="buffer")
    ap.add_argument("--replay", help="PREFIX of a batch dump to train on (see above)")
    ap.add_argument("--init-from", help="model directory whose weights to start from (see above)")
    ap.add_argument("--save-init", help="directory to write the starting weights to (see above)")
    ap.add_argument("--log-every", type=int, help="override run.log_every")
    ap.add_argument("--dump", help="PREFIX to write this run's batches to (see above)")
    args = ap.parse_args()

    with open(args.config) as f:
        cfg = yaml.safe_load(f)
    d, m, o, r = cfg["data"], cfg.get("model", {}), cfg.get("optim", {}), cfg.get("run", {})
    steps = args.steps or r.get("steps", 1000)
    batch = d.get("batch_size", 64)
    size = d.get("image_size", 64)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)

    train_shards = expand_pattern(args.train or d["train"])
    val_shards = expand_pattern(args.val or d["val"])
    classes, labels = None, {}
    for s in train_shards:
        classes, table = read_label_cache(s + ".labels")
        labels.update(table)
    val_labels = {}
    for s in val_shards:
        _, table = read_label_cache(s + ".labels")
        val_labels.update(table)

    model = timm.models.vision_transformer.VisionTransformer(
        img_size=size, patch_size=m.get("patch_size", 8), num_classes=classes,
        embed_dim=m.get("embed_dim", 192), depth=m.get("depth", 6), num_heads=m.get("num_heads", 3),
        mlp_ratio=m.get("mlp_ratio", 4.0), qkv_bias=m.get("qkv_bias", True),
        class_token=m.get("class_token", True), global_pool=m.get("global_pool", "token"))
    if args.init == "catlip":
        catlip_init(model, args.seed)
    if m.get("head_bias_prior", False):
        counts = np.zeros(classes)
        for ls in labels.values():
            for c in set(ls):
                if c < classes:
                    counts[c] += 1
        n = max(len(labels), 1)
        p = np.clip(counts / n, 0.5 / n, 1 - 0.5 / n)
        with torch.no_grad():
            model.head.bias.copy_(torch.from_numpy(np.log(p / (1 - p))).float())

    if args.init_from:
        from safetensors.torch import load_file
        model.load_state_dict(load_file(os.path.join(args.init_from, "model.safetensors")), strict=True)
    if args.save_init:
        from safetensors.torch import save_file
        os.makedirs(args.save_init, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(args.save_init, "model.safetensors"))
    no_decay_names = set(model.no_weight_decay()) if args.wd_groups == "timm" else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name in no_decay_names else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.get("weight_decay", 0.2)}, {"params": no_decay, "weight_decay": 0.0}],
        lr=o.get("lr", 1e-3), betas=(o.get("beta1", 0.9), o.get("beta2", 0.999)), eps=o.get("eps", 1e-8))
    clip = o.get("clip_grad", 1.0)

    stream = ShardStream(train_shards, labels, size, d.get("crop_scale", [0.08, 1.0]),
                         d.get("shuffle_buffer", 1000), args.shuffle, args.seed)
    loader = torch.utils.data.DataLoader(stream, batch_size=batch, num_workers=1, collate_fn=collate,
                                         prefetch_factor=4, persistent_workers=True)
    log_every = r.get("log_every", 50) if args.log_every is None else args.log_every
    eval_every = r.get("eval_every", 1000) if args.eval_every is None else args.eval_every
    if eval_every > 0:
        val_images, val_lists = load_validation(val_shards, val_labels, size, d.get("eval_crop_pct", 0.875))
    metrics = open(os.path.join(args.out, "metrics.jsonl"), "w")

    def write(obj):
        metrics.write(json.dumps(obj) + "\n")
        metrics.flush()

    loss_sum, interval_steps, wait, val_total = 0.0, 0, 0.0, 0.0
    if args.replay:
        image_floats, target_bytes = batch * 3 * size * size, batch * classes

        def replay_batch(i):
            # the dump may still be growing (both runs at once): wait for batch i
            for _ in range(3600):
                with open(args.replay + ".images.f32", "rb") as fi, open(args.replay + ".targets.u8", "rb") as ft:
                    fi.seek(4 * image_floats * i)
                    ft.seek(target_bytes * i)
                    a, b = fi.read(4 * image_floats), ft.read(target_bytes)
                if len(a) == 4 * image_floats and len(b) == target_bytes:
                    x = torch.from_numpy(np.frombuffer(a, dtype=np.float32).copy().reshape(batch, 3, size, size))
                    y = torch.from_numpy(np.frombuffer(b, dtype=np.uint8).astype(np.float32).reshape(batch, classes))
                    return x, y
                time.sleep(1)
            raise SystemExit(f"{args.replay}: batch {i} never arrived")
    else:
        it = iter(loader)
    model.train()
    step = 0
    start = time.perf_counter()
    while step < steps:
        t0 = time.perf_counter()
        if args.replay:
            images, targets = replay_batch(step)
            epoch = 0
        else:
            images, lists, epoch = next(it)
            targets = multi_hot(lists, classes)
            if args.dump:
                with open(args.dump + ".images.f32", "ab") as fi, open(args.dump + ".targets.u8", "ab") as ft:
                    fi.write(images.numpy().astype(np.float32).tobytes())
                    ft.write(targets.numpy().astype(np.uint8).tobytes())
        wait += time.perf_counter() - t0
        for group in opt.param_groups:
            group["lr"] = corenet_cosine(step, o, steps)
        logits = model(images)
        loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / len(images)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip > 0 else float("inf")))
        opt.step()
        step += 1
        loss_sum += loss.item()
        interval_steps += 1
        if step % log_every == 0 or step == steps:
            seconds = time.perf_counter() - start
            write({"step": step, "epoch": epoch, "loss": loss_sum / interval_steps,
                   "lr": opt.param_groups[0]["lr"], "grad_norm": grad_norm, "seconds": round(seconds, 2)})
            print(f"step {step}/{steps} loss {loss_sum / interval_steps:.4f} {seconds - val_total:.0f} s "
                  f"data wait {100 * wait / max(seconds - val_total, 1e-9):.1f}%", flush=True)
            loss_sum, interval_steps = 0.0, 0
            if eval_every > 0 and (step % eval_every == 0 or step == steps):
                t0 = time.perf_counter()
                v = validate(model, val_images, val_lists, classes)
                val_seconds = time.perf_counter() - t0
                val_total += val_seconds
                write({"step": step, "val_map": v, "val_images": len(val_lists),
                       "seconds": round(time.perf_counter() - start, 2), "val_seconds": round(val_seconds, 2)})
                print(f"step {step}: validation mAP {v:.4f}", flush=True)
    train_seconds = time.perf_counter() - start - val_total
    write({"done": True, "steps": steps, "train_seconds": round(train_seconds, 2),
           "torch": torch.__version__, "timm": timm.__version__, "threads": args.threads,
           "init": args.init, "wd_groups": args.wd_groups, "shuffle": args.shuffle, "seed": args.seed,
           "replay": args.replay})


if __name__ == "__main__":
    main()
