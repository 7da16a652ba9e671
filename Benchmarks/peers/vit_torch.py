#!/usr/bin/env python3
r"""PyTorch peer for `catlip bench train|infer` (the ViT engine's speed bars, issue 4).

Runs the same Vision Transformer on the same synthetic batches in PyTorch, as PyTorch users
run it on a CPU: float32, eager mode (torch.compile off), default allocator, default AdamW,
torch.set_num_threads(--threads). Prints one JSON line per run.

Run by hand, not in CI (it needs PyTorch, which the Swift build does not):

    # once: a venv outside the repository (see ../shared/SWIFT_NOTES.md, "Python peers")
    python3 -m venv /opt/catlip-peers
    /opt/catlip-peers/bin/pip install torch==2.13.0+cpu torchvision==0.28.0 timm

    PY=/opt/catlip-peers/bin/python
    # config A (the defaults), training and inference, 2 threads
    $PY Benchmarks/peers/vit_torch.py train
    $PY Benchmarks/peers/vit_torch.py infer
    # ViT-Ti/16 at 224
    $PY Benchmarks/peers/vit_torch.py train --image-size 224 --patch 16 --depth 12 \
        --batch 32 --steps 10
    # config A with CatLIP's 24,320-class head
    $PY Benchmarks/peers/vit_torch.py train --vocab 24320
    # where the time goes (torch.profiler table on stderr after the timed steps)
    $PY Benchmarks/peers/vit_torch.py train --profile 3
    # CatLIP's released ViT-B/16 (corenet's conv stem, issue 22), inference at 224
    $PY Benchmarks/peers/vit_torch.py infer --corenet-stem --image-size 224 --patch 16 \
        --dim 768 --depth 12 --heads 12 --vocab 24320 --batch 8 --steps 5

Options and defaults are those of `catlip bench train|infer` (--image-size 64 --patch 8
--dim 192 --depth 6 --heads 3 --vocab 1000 --batch 64 --steps 20 --threads 2), plus
--mlp-ratio 4, --class-token/--no-class-token, --warmup 3, and, for reference only, --bf16
(torch.autocast("cpu", torch.bfloat16) around forward and loss; parameters, gradients and
optimiser state stay float32).

The model (--impl modules, the default) is timm's VisionTransformer layout written out with
torch.nn modules: Conv2d patch embedding (kernel = stride = patch), optional class token,
learned position embedding covering the class token, pre-norm blocks (LayerNorm eps 1e-6 ->
fused qkv Linear -> F.scaled_dot_product_attention -> proj Linear -> residual; LayerNorm ->
fc1 -> exact GELU -> fc2 -> residual), pooling "token" (final norm, class token) with a class
token or "avg" (mean of patch tokens, fc_norm) without one, then head Linear(dim, vocab).
--corenet-stem swaps the patch embedding for the convolutional stem of Apple corenet's
VisionTransformer, which CatLIP's released models use (corenet/modeling/models/classification/
vit.py, _build_patch_embedding_layer; needs --patch 16): Conv2d(3, W, 4, stride 4, padding 1,
no bias) -> BatchNorm2d -> GELU -> Conv2d(W, W, 2, stride 2, no bias) -> BatchNorm2d -> GELU ->
Conv2d(W, D, 2, stride 2) with W = max(32, D // 4), and the position embedding covers the patch
tokens only (the class token is prepended after it is added: timm's no_embed_class=True). The
names are those of timm's vit_base_mci_224 layout (patch_embed.backbone.{0,1,2}.conv,
.backbone.{0,1}.bn; timm's HybridEmbed with proj=False), which catlip's corenet importer writes.
Parameter names are timm's: `--verify-timm` loads this model's state_dict into
timm.models.vision_transformer.VisionTransformer (strict=True) and compares logits. `--impl
timm` benchmarks timm's own class instead (needs the torchvision workaround below; timm's
Attention also calls F.scaled_dot_product_attention, so the two run the same kernels).

What is timed, per step (after --warmup untimed steps; --steps timed; the median is reported):
  train: zero_grad(set_to_none) + forward + BCE-with-logits (sum over classes, mean over the
         batch, CatLIP's reduction) + backward + clip_grad_norm_(1.0) + AdamW step
         (lr 1e-3, betas 0.9/0.999, weight decay 0.2 on parameters with ndim >= 2, 0 otherwise;
         torch's default AdamW implementation on CPU)
  infer: forward in eval mode under torch.inference_mode()
Data: one synthetic batch, made once before timing: images uniform in [0, 1), shape
(batch, 3, S, S); multi-hot targets with 5 indices drawn per image (about 5 ones; duplicates
collapse). Seeded (--seed).

Output fields: peer, mode, impl, the configuration (image_size, patch, dim, depth, heads, vocab,
batch, steps, warmup, mlp_ratio, class_token, bf16, corenet_stem), images_per_s (= batch / median step time),
step_ms_median, step_ms_min, step_ms_max, step_ms (every timed step), peak_rss_mb
(resource.getrusage(RUSAGE_SELF).ru_maxrss of the whole process, so it includes Python and the
torch libraries; base_rss_mb is the same figure before the model was built), gflops (achieved,
from the analytic count below), gflop_per_image, torch (version), blas, threads, load_avg
(os.getloadavg() at the end).

Noise: the machine has 2 vCPUs shared with other work. When any other process takes one core
while this runs with --threads 2, torch's OpenMP regions wait for the descheduled thread at every
op and steps get 4-8x slower (not 2x); step_ms shows such phases as runs of slow steps. Compare
catlip and this peer run back to back on a quiet machine, and discard runs with slow phases.

FLOP count (analytic; multiply-add = 2 FLOPs; catlip's bench should use the same). With
N = (S / P)^2 patches, T = N + 1 with a class token (N without), D = dim, M = mlp_ratio * D,
V = vocab, L = depth, C = 3 input channels, per image (with --corenet-stem the patch embedding
GEMM is replaced by the stem's three convolutions, W = max(32, D // 4):
(S/4)^2 * C*16 * W + (S/8)^2 * W*4 * W + N * W*4 * D MACs, and T = N + 1 as before):
    forward MACs = N * (C * P * P) * D                       patch embedding GEMM
                 + L * ( T * D * 3D                          qkv
                       + T * T * D                           attention Q K^T (all heads)
                       + T * T * D                           attention A V (all heads)
                       + T * D * D                           proj
                       + T * D * M + T * M * D )             fc1, fc2
                 + D * V                                     head (one pooled vector)
    forward FLOPs = 2 * forward MACs;  training FLOPs = 3 * forward FLOPs
LayerNorm, GELU, softmax, the loss and the optimiser are not counted. The factor 3 is the usual
convention (backward = 2x forward); it slightly over-counts, since no gradient is needed for the
input images. Config A: 0.370 GFLOP forward per image; ViT-Ti/16 at 224: 2.51; CatLIP's
ViT-B/16 (--corenet-stem, 24,320 classes) at 224: 35.45 (35.16 with the plain patch GEMM).

PyTorch's fp32 GEMMs go through MKL here (BLAS_INFO=mkl in torch.__config__.show()); on this
AMD CPU MKL takes its AVX2 code path. oneDNN (mkldnn) serves the convolution.

torchvision 0.28.0 from PyPI is a CUDA build: next to CPU torch, `import timm` fails with
"operator torchvision::nms does not exist". Only --impl timm and --verify-timm import timm;
they define the schemas of the two ops that build registers (torchvision::nms, ::qnms) with
torch.library first, as pipeline_torchvision.py does.
"""

import argparse
import json
import math
import os
import re
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- model (timm layout)


class PatchEmbed(nn.Module):
    def __init__(self, img_size, patch_size, in_chans, embed_dim):
        super().__init__()
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):  # (B, C, S, S) -> (B, N, D)
        return self.proj(x).flatten(2).transpose(1, 2)


class ConvStemEmbed(nn.Module):
    """corenet's ViT conv stem (vit.py _build_patch_embedding_layer) under timm's names for
    vit_base_mci_224 (ConvStem of ConvNormAct: conv, bn, GELU; the last conv alone)."""

    def __init__(self, img_size, in_chans, embed_dim):
        super().__init__()
        width = max(32, embed_dim // 4)
        self.backbone = nn.Sequential(
            ConvBnAct(in_chans, width, 4, 4, 1), ConvBnAct(width, width, 2, 2, 0),
            ConvBnAct(width, embed_dim, 2, 2, 0, norm_act=False))
        self.num_patches = (img_size // 16) ** 2

    def forward(self, x):  # (B, C, S, S) -> (B, N, D)
        return self.backbone(x).flatten(2).transpose(1, 2)


class ConvBnAct(nn.Module):
    def __init__(self, cin, cout, kernel, stride, padding, norm_act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=not norm_act)
        self.bn = nn.BatchNorm2d(cout) if norm_act else nn.Identity()  # eps 1e-5, momentum 0.1
        self.act = nn.GELU() if norm_act else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        assert dim % num_heads == 0, "dim must be divisible by heads"
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):  # (B, T, D)
        B, T, D = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, H, T, hd)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, T, D))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact (erf)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """timm's VisionTransformer, inference/training path only, same parameter names."""

    def __init__(self, img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio,
                 num_classes, class_token, corenet_stem=False):
        super().__init__()
        self.global_pool = "token" if class_token else "avg"
        if corenet_stem:
            assert patch_size == 16, "corenet's stem has stride 16"
            self.patch_embed = ConvStemEmbed(img_size, 3, embed_dim)
        else:
            self.patch_embed = PatchEmbed(img_size, patch_size, 3, embed_dim)
        self.num_prefix_tokens = 1 if class_token else 0
        # corenet (timm's no_embed_class): no position embedding for the class token
        self.no_embed_class = corenet_stem
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        num_tokens = self.patch_embed.num_patches + (
            0 if self.no_embed_class else self.num_prefix_tokens)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, embed_dim))
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        # timm: "token" pooling -> norm then class token; "avg" -> mean then fc_norm.
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6) if class_token else nn.Identity()
        self.fc_norm = nn.Identity() if class_token else nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        self._init_weights()

    def _init_weights(self):
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.patch_embed(x)
        if self.no_embed_class:
            x = x + self.pos_embed
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if not self.no_embed_class:
            x = x + self.pos_embed
        x = self.norm(self.blocks(x))
        x = x[:, 0] if self.cls_token is not None else x.mean(dim=1)
        return self.head(self.fc_norm(x))


# ---------------------------------------------------------------- timm (optional)

_TV_SCHEMA_LIB = None  # keep the Library alive for the life of the process


def import_timm():
    global _TV_SCHEMA_LIB
    try:
        import timm  # noqa: F401
    except RuntimeError as e:
        if "torchvision::nms" not in str(e) and "torchvision::qnms" not in str(e):
            raise
        # CUDA torchvision next to CPU torch: its compiled ops never got registered.
        for name in [m for m in sys.modules
                     if m.split(".")[0] in ("torchvision", "timm")]:
            del sys.modules[name]
        _TV_SCHEMA_LIB = torch.library.Library("torchvision", "DEF")
        _TV_SCHEMA_LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TV_SCHEMA_LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import timm
    return timm


def timm_model(a):
    timm = import_timm()
    from timm.models.vision_transformer import VisionTransformer as TimmViT
    kw = {}
    if a.corenet_stem:  # as timm's vit_base_mci_224, with corenet's padding 1 on the first conv
        from functools import partial
        from timm.layers import HybridEmbed
        from timm.models.vision_transformer_hybrid import ConvStem
        w = max(32, a.dim // 4)
        stem = ConvStem(in_chans=3, depth=3, channels=(w, w, a.dim), kernel_size=(4, 2, 2),
                        stride=(4, 2, 2), padding=(1, 0, 0), act_layer=nn.GELU)
        kw = dict(patch_size=1, no_embed_class=True,
                  embed_layer=partial(HybridEmbed, backbone=stem, proj=False))
    else:
        kw = dict(patch_size=a.patch)
    return TimmViT(img_size=a.image_size, in_chans=3, num_classes=a.vocab,
                   embed_dim=a.dim, depth=a.depth, num_heads=a.heads, mlp_ratio=a.mlp_ratio,
                   qkv_bias=True, class_token=a.class_token,
                   global_pool="token" if a.class_token else "avg", **kw), timm.__version__


def build_model(a):
    if a.impl == "timm":
        model, _ = timm_model(a)
        return model
    return VisionTransformer(a.image_size, a.patch, a.dim, a.depth, a.heads, a.mlp_ratio,
                             a.vocab, a.class_token, a.corenet_stem)


def verify_timm(a):
    """Load this script's model into timm's class (strict) and compare logits; exit."""
    torch.manual_seed(a.seed)
    ours = VisionTransformer(a.image_size, a.patch, a.dim, a.depth, a.heads, a.mlp_ratio,
                             a.vocab, a.class_token, a.corenet_stem).eval()
    theirs, version = timm_model(a)
    theirs.eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.rand(4, 3, a.image_size, a.image_size)
    with torch.inference_mode():
        d = (ours(x) - theirs(x)).abs().max().item()
    print(json.dumps({"verify_timm": "ok" if d < 1e-5 else "MISMATCH", "timm": version,
                      "state_dict_keys": len(ours.state_dict()), "max_abs_logit_diff": d}))
    return 0 if d < 1e-5 else 1


# ---------------------------------------------------------------- FLOPs


def forward_flops_per_image(a):
    n = (a.image_size // a.patch) ** 2
    t = n + (1 if a.class_token else 0)
    d, m, v, c = a.dim, int(a.dim * a.mlp_ratio), a.vocab, 3
    per_block = t * d * 3 * d + 2 * t * t * d + t * d * d + 2 * t * d * m
    if a.corenet_stem:
        w, s = max(32, d // 4), a.image_size
        embed = (s // 4) ** 2 * c * 16 * w + (s // 8) ** 2 * w * 4 * w + n * w * 4 * d
    else:
        embed = n * (c * a.patch * a.patch) * d
    macs = embed + a.depth * per_block + d * v
    return 2 * macs


# ---------------------------------------------------------------- benchmark


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def blas_info():
    m = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
    return m.group(1) if m else "unknown"


def make_batch(a, gen):
    x = torch.rand(a.batch, 3, a.image_size, a.image_size, generator=gen)
    y = torch.zeros(a.batch, a.vocab)
    y.scatter_(1, torch.randint(a.vocab, (a.batch, 5), generator=gen), 1.0)
    return x, y


def make_optimizer(model, a):
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    kw = {}
    if a.adamw != "default":
        kw[a.adamw] = True
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.2},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=1e-3, betas=(0.9, 0.999), **kw)


def autocast(a):
    if a.bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def make_step(model, a, x, y):
    if a.mode == "infer":
        model.eval()

        def step():
            with torch.inference_mode(), autocast(a):
                model(x)
        return step

    model.train()
    opt = make_optimizer(model, a)
    params = list(model.parameters())

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(a):
            logits = model(x)
            loss = F.binary_cross_entropy_with_logits(logits, y, reduction="sum") / x.shape[0]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss
    return step


def run(a):
    torch.set_num_threads(a.threads)
    base_rss = rss_mb()
    gen = torch.Generator().manual_seed(a.seed)
    torch.manual_seed(a.seed)
    model = build_model(a)
    x, y = make_batch(a, gen)
    step = make_step(model, a, x, y)

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)

    if a.profile > 0:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(a.profile):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.profile_rows),
              file=sys.stderr)

    med = statistics.median(times)
    fwd = forward_flops_per_image(a)
    per_image = fwd * (3 if a.mode == "train" else 1)
    ips = a.batch / med
    out = {
        "peer": "torch", "mode": a.mode, "impl": a.impl,
        "image_size": a.image_size, "patch": a.patch, "dim": a.dim, "depth": a.depth,
        "heads": a.heads, "vocab": a.vocab, "batch": a.batch, "steps": a.steps,
        "warmup": a.warmup, "mlp_ratio": a.mlp_ratio, "class_token": a.class_token,
        "bf16": a.bf16, "corenet_stem": a.corenet_stem,
        "images_per_s": round(ips, 2),
        "step_ms_median": round(med * 1e3, 2),
        "step_ms_min": round(min(times) * 1e3, 2),
        "step_ms_max": round(max(times) * 1e3, 2),
        "step_ms": [round(t * 1e3, 1) for t in times],
        "peak_rss_mb": round(rss_mb(), 1),
        "base_rss_mb": round(base_rss, 1),
        "gflops": round(per_image * ips / 1e9, 1),
        "gflop_per_image": round(per_image / 1e9, 4),
        "torch": torch.__version__, "blas": blas_info(), "threads": a.threads,
        "load_avg": [round(v, 2) for v in os.getloadavg()],
    }
    if a.adamw != "default":
        out["adamw"] = a.adamw
    print(json.dumps(out), flush=True)
    return 0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=["train", "infer"])
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--dim", type=int, default=192)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--heads", type=int, default=3)
    p.add_argument("--vocab", type=int, default=1000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="timed steps (median reported)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mlp-ratio", type=float, default=4.0)
    p.add_argument("--class-token", action=argparse.BooleanOptionalAction, default=True,
                   help="class token + 'token' pooling (default), or none + 'avg' pooling")
    p.add_argument("--corenet-stem", action="store_true",
                   help="corenet's conv stem + no position embedding on the class token "
                        "(CatLIP's released models; needs --patch 16)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--bf16", action="store_true",
                   help="torch.autocast('cpu', bfloat16) around forward and loss (reference)")
    p.add_argument("--impl", choices=["modules", "timm"], default="modules",
                   help="this script's torch.nn model (default) or timm's VisionTransformer")
    p.add_argument("--adamw", choices=["default", "foreach", "fused"], default="default",
                   help="AdamW implementation (default: torch's choice on CPU, as users run it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", type=int, default=0, metavar="K",
                   help="after timing, profile K more steps; table on stderr")
    p.add_argument("--profile-rows", type=int, default=25)
    p.add_argument("--verify-timm", action="store_true",
                   help="check parameter names and logits against timm's class, then exit")
    a = p.parse_args(argv)
    for name in ("image_size", "patch", "dim", "depth", "heads", "vocab", "batch", "steps",
                 "threads"):
        if getattr(a, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if a.image_size % a.patch:
        p.error("--image-size must be a multiple of --patch")
    if a.corenet_stem and (a.patch != 16 or a.image_size % 16):
        p.error("--corenet-stem needs --patch 16 and an image size divisible by 16")
    if a.dim % a.heads:
        p.error("--dim must be divisible by --heads")
    if a.warmup < 0 or a.profile < 0:
        p.error("--warmup and --profile must be >= 0")
    return a


def main():
    a = parse_args()
    if a.verify_timm:
        return verify_timm(a)
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
