#!/usr/bin/env python3
"""Write finetune_step/: one fine-tuning step of a tiny timm VisionTransformer, the reference of
catlip's whole step (Tests/TrainingTests/FineTuneStepTests): stochastic depth with fixed masks,
mixup with a fixed lambda and label smoothing, the soft-target cross-entropy, clipping, and one
AdamW step of timm's optimizer factory with layer decay.

    /opt/catlip-peers/bin/python Tests/TrainingTests/Fixtures/make_finetune_step_fixture.py

Needs torch 2.13.0+cpu, timm 1.0.31 and safetensors (the peer venv); torchvision's import is
mended by Benchmarks/peers/torchvision_compat.py (see its docstring). Overwrites exactly
finetune_step/model.safetensors (the weights before the step, timm's names), finetune_step/
config.json (the model's hub config) and finetune_step/reference.safetensors:

    x (B,3,S,S), labels (B)         the batch before mixing
    mixed_x, targets (B,V)          timm's Mixup (lambda 0.7, label smoothing 0.1): what the model sees
    keep (depth,2,B)                1 = branch kept; [l,0] attention, [l,1] MLP of block l, image b
    rates (depth)                   timm's per-block drop rates (calculate_drop_path_rates)
    logits (B,V), loss ()           the training forward with those masks
    grad.NAME                       every parameter's gradient before clipping
    grad_norm (), clip ()           the global norm and the clipping threshold (half the norm)
    after.NAME                      every parameter after clipping and one AdamW step

The model is timm.create_model("vit_tiny_patch16_224", ...) shrunk to 16 px, patch 4, width 32,
depth 3, 2 heads, 5 classes, drop_path_rate 0.2; its initialisation is timm's, with every
LayerNorm weight and bias and every Linear bias moved by 0.1·N(0,1) and the head drawn (timm
starts it at zero bias) so that every gradient is non-trivial. timm's DropPath draws with
torch's Bernoulli; the fixture replaces each DropPath's forward by the product with its fixed
mask divided by keep_prob, as timm's drop_path computes it (scale_by_keep). The optimizer is
timm.optim.create_optimizer_v2(model, "adamw", lr, weight_decay, layer_decay=0.75); each group's
lr is then multiplied by its lr_scale as timm's schedulers do at every step. One intra-op thread,
fixed seeds: the same bytes on every run with the same versions on the same machine.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "Benchmarks", "peers"))
from torchvision_compat import import_torchvision  # noqa: E402

import_torchvision()
import torch  # noqa: E402
import timm  # noqa: E402
import timm.data.mixup as tm  # noqa: E402
import timm.optim  # noqa: E402
from timm.loss import SoftTargetCrossEntropy  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

torch.set_num_threads(1)
OUT = os.path.join(HERE, "finetune_step")
S, P, D, DEPTH, HEADS, V, B = 16, 4, 32, 3, 2, 5, 4
DROP_PATH_RATE = 0.2
LR, WD, LAYER_DECAY, LAMBDA, SMOOTHING = 1e-3, 0.05, 0.75, 0.7, 0.1
# keep[l][branch][b]: block 0 has rate 0 (timm makes it an Identity), the others drop some
KEEP = [
    [[1, 1, 1, 1], [1, 1, 1, 1]],
    [[1, 0, 1, 1], [0, 1, 1, 1]],
    [[1, 1, 0, 1], [1, 0, 1, 0]],
]


def main():
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=S, patch_size=P, embed_dim=D,
        depth=DEPTH, num_heads=HEADS, mlp_ratio=4.0, num_classes=V, drop_path_rate=DROP_PATH_RATE)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith(".bias"):
                p.add_(0.1 * torch.randn(p.shape, generator=g))
            if name == "head.weight":
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    before = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}

    # fixed masks through each DropPath (timm's own arithmetic: mask.div_(keep_prob), x * mask)
    keep = torch.tensor(KEEP, dtype=torch.float32)
    rates = []
    for l, blk in enumerate(model.blocks):
        rate = getattr(blk.drop_path1, "drop_prob", 0.0)
        rates.append(rate)
        for branch, module in enumerate([blk.drop_path1, blk.drop_path2]):
            if rate == 0:
                assert isinstance(module, torch.nn.Identity) and bool(keep[l, branch].all())
                continue
            scale = keep[l, branch].clone().div_(1 - rate).view(B, 1, 1)
            module.forward = (lambda s: (lambda x: x * s))(scale)
    assert abs(rates[-1] - DROP_PATH_RATE) < 1e-6 and abs(rates[1] - DROP_PATH_RATE / 2) < 1e-6, rates

    x = torch.rand(B, 3, S, S, generator=g)
    labels = torch.tensor([0, 3, 4, 1])
    mixer = tm.Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=SMOOTHING, num_classes=V)
    mixer._params_per_batch = lambda: (LAMBDA, False)
    mixed_x, targets = mixer(x.clone(), labels.clone())

    optimizer = timm.optim.create_optimizer_v2(
        model, "adamw", lr=LR, weight_decay=WD, layer_decay=LAYER_DECAY)
    for group in optimizer.param_groups:
        group["lr"] = LR * group["lr_scale"]

    model.train()
    logits = model(mixed_x)
    loss = SoftTargetCrossEntropy()(logits, targets)
    optimizer.zero_grad()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    norm = torch.sqrt(sum((gr.double() ** 2).sum() for gr in grads.values())).item()
    clip = float(f"{norm / 2:.3g}")
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()

    ref = {
        "x": x, "labels": labels.float(), "mixed_x": mixed_x, "targets": targets, "keep": keep,
        "rates": torch.tensor(rates), "logits": logits.detach(), "loss": loss.detach().reshape(1),
        "grad_norm": torch.tensor([norm]), "clip": torch.tensor([clip]),
    }
    ref.update({"grad." + n: t for n, t in grads.items()})
    ref.update({"after." + n: p.detach().clone() for n, p in model.named_parameters()})
    os.makedirs(OUT, exist_ok=True)
    save_file(before, os.path.join(OUT, "model.safetensors"), metadata={"format": "pt"})
    save_file({k: v.float().contiguous() for k, v in ref.items()}, os.path.join(OUT, "reference.safetensors"))
    config = {
        "architecture": "vit_tiny_patch16_224",
        "num_classes": V,
        "num_features": D,
        "global_pool": "token",
        "model_args": {
            "img_size": S, "patch_size": P, "embed_dim": D, "depth": DEPTH, "num_heads": HEADS,
            "mlp_ratio": 4.0, "num_classes": V, "drop_path_rate": DROP_PATH_RATE,
        },
        "pretrained_cfg": {
            "input_size": [3, S, S], "interpolation": "bicubic", "crop_pct": 0.9,
            "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "num_classes": V,
        },
    }
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    print("timm", timm.__version__, "torch", torch.__version__, "loss", loss.item(), "grad norm", norm,
          "clip", clip, "rates", rates)


if __name__ == "__main__":
    main()
