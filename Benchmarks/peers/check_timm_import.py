#!/usr/bin/env python3
"""An imported CatLIP model directory loads into timm and gives corenet's logits (by hand).

    PY=/opt/catlip-peers/bin/python
    # a directory written by catlip's corenet importer (issue 22):
    $PY Benchmarks/peers/check_timm_import.py MODEL_DIR Tests/InteropTests/Fixtures/corenet/reference.safetensors
    # before the importer exists: rename a corenet .pt state dict to timm's names in Python,
    # write a temporary model directory, then run the same check on it:
    $PY Benchmarks/peers/check_timm_import.py --from-pt Tests/InteropTests/Fixtures/corenet/tiny.pt \
        Tests/InteropTests/Fixtures/corenet/reference.safetensors [--keep DIR]

MODEL_DIR holds config.json (timm hub layout: architecture, num_classes, model_args with
embed_dim, depth, num_heads, mlp_ratio, class_token, global_pool, no_embed_class, and catlip's
`stem` = {widths, kernel_sizes, strides, paddings}) and model.safetensors with timm's parameter
names. The script builds timm's VisionTransformer the way timm's vit_base_mci_224 does
(timm/models/vision_transformer_hybrid.py: a ConvStem of ConvNormAct layers with BatchNorm2d
and GELU, the last conv with bias and no norm/act, wrapped in HybridEmbed(proj=False) with
patch_size 1; no_embed_class=True, class_token=True, global_pool "token") at the config's
dimensions, with the stem's paddings from config (corenet's first conv pads 1, timm's
vit_base_mci_224 pads 0: corenet's ConvLayer2d pads int((k - 1) / 2)). Stem widths come from
config or, when absent, from the conv weights' shapes. It loads model.safetensors with
strict=True (BatchNorm fills in a missing num_batches_tracked when loading a plain dict), runs
images_224 from the reference file in eval mode and compares with logits_224. Prints one JSON
line; exits 1 when max |diff| / max |reference| exceeds 1e-4.

--from-pt renames corenet keys as timm's _convert_mobileclip does (no `image_encoder.model.`
prefix here, and CatLIP's classifier is a plain Linear: classifier.{weight,bias} -> head.*;
out_proj_attn (corenet's flash attention, the CatLIP configs) and out_proj (the naive one) both
-> attn.proj), drops the neural_augmentor.* scalars (RangeAugment, training only) and the
num_batches_tracked counters (model.safetensors is float32 only), squeezes pos_embed
[1, 1, 196, D] to [1, 196, D], and writes config.json as the importer will.
Not run in CI (needs torch, timm and safetensors from pip).
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from functools import partial

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vit_torch import import_timm  # noqa: E402  (the torchvision workaround, then timm)

TOLERANCE = 1e-4


# ---------------------------------------------------------------- corenet -> timm names


def corenet_to_timm(state):
    """corenet VisionTransformer state dict -> timm VisionTransformer names (see docstring)."""
    out = {}
    for key, value in state.items():
        if key.startswith("neural_augmentor.") or key.endswith("num_batches_tracked"):
            continue
        k = key
        m = re.fullmatch(r"patch_emb\.(\d+)\.block\.(conv|norm)\.(.+)", k)
        if m:
            k = f"patch_embed.backbone.{m[1]}.{'conv' if m[2] == 'conv' else 'bn'}.{m[3]}"
        elif k == "pos_embed.pos_embed.pos_embed":
            k, value = "pos_embed", value.reshape(1, value.shape[-2], value.shape[-1])
        elif k.startswith("post_transformer_norm."):
            k = "norm." + k[len("post_transformer_norm."):]
        elif k.startswith("classifier."):
            k = "head." + k[len("classifier."):]
        elif k.startswith("transformer."):
            _, i, rest = k.split(".", 2)
            for old, new in (("pre_norm_mha.0.", "norm1."), ("pre_norm_mha.1.qkv_proj.", "attn.qkv."),
                             ("pre_norm_mha.1.out_proj_attn.", "attn.proj."),
                             ("pre_norm_mha.1.out_proj.", "attn.proj."),
                             ("pre_norm_ffn.0.", "norm2."), ("pre_norm_ffn.1.", "mlp.fc1."),
                             ("pre_norm_ffn.4.", "mlp.fc2.")):
                if rest.startswith(old):
                    rest = new + rest[len(old):]
                    break
            else:
                raise KeyError(f"unexpected corenet key {key}")
            k = f"blocks.{i}.{rest}"
        elif k != "cls_token":
            raise KeyError(f"unexpected corenet key {key}")
        out[k] = value.float().contiguous()
    return out


def write_model_dir(pt_path, directory):
    from safetensors.torch import save_file
    state = torch.load(pt_path, map_location="cpu", weights_only=True)
    if "model_state_dict" in state:  # a training checkpoint rather than the EMA state dict
        state = state["model_state_dict"]
    timm_state = corenet_to_timm(state)
    dim = timm_state["cls_token"].shape[-1]
    depth = 1 + max(int(k.split(".")[1]) for k in timm_state if k.startswith("blocks."))
    qkv = timm_state["blocks.0.attn.qkv.weight"]
    hidden = timm_state["blocks.0.mlp.fc1.weight"].shape[0]
    widths = [timm_state[f"patch_embed.backbone.{i}.conv.weight"].shape[0] for i in range(3)]
    heads = dim // 64  # corenet's flash attention needs head_dim 64 or 128; CatLIP uses 64
    num_classes = timm_state["head.weight"].shape[0]
    config = {
        "architecture": "vit_base_mci_224" if dim == 768 else "vit_mci_224",
        "num_classes": num_classes,
        "num_features": dim,
        "model_args": {
            "img_size": 224, "patch_size": 16, "embed_dim": dim, "depth": depth,
            "num_heads": heads, "mlp_ratio": hidden / dim, "class_token": True,
            "global_pool": "token", "no_embed_class": True,
            "stem": {"widths": widths, "kernel_sizes": [4, 2, 2], "strides": [4, 2, 2],
                     "paddings": [1, 0, 0]},
        },
        "pretrained_cfg": {"input_size": [3, 224, 224], "mean": [0.0, 0.0, 0.0],
                           "std": [1.0, 1.0, 1.0], "crop_pct": 1.0,
                           "interpolation": "bilinear"},
    }
    assert qkv.shape == (3 * dim, dim)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    save_file(timm_state, os.path.join(directory, "model.safetensors"))


# ---------------------------------------------------------------- timm model


def build_timm(config, weights):
    import_timm()
    from timm.layers import HybridEmbed
    from timm.models.vision_transformer import VisionTransformer
    from timm.models.vision_transformer_hybrid import ConvStem

    a = config["model_args"]
    stem = a.get("stem") or {}
    widths = stem.get("widths") or [
        weights[f"patch_embed.backbone.{i}.conv.weight"].shape[0] for i in range(3)]
    kernels = stem.get("kernel_sizes", [4, 2, 2])
    strides = stem.get("strides", [4, 2, 2])
    paddings = stem.get("paddings", [1, 0, 0])
    backbone = ConvStem(in_chans=3, depth=len(widths), channels=tuple(widths),
                        kernel_size=tuple(kernels), stride=tuple(strides),
                        padding=tuple(paddings), act_layer=nn.GELU)
    for layer, pad in zip(backbone, paddings):  # ConvNormAct(..., padding=p) -> Conv2d padding
        assert tuple(layer.conv.padding) == (pad, pad), (layer.conv.padding, pad)
    model = VisionTransformer(
        img_size=a.get("img_size", 224), patch_size=1, in_chans=3,
        num_classes=config["num_classes"], embed_dim=a["embed_dim"], depth=a["depth"],
        num_heads=a["num_heads"], mlp_ratio=a.get("mlp_ratio", 4.0), qkv_bias=True,
        class_token=a.get("class_token", True), global_pool=a.get("global_pool", "token"),
        no_embed_class=a.get("no_embed_class", True),
        embed_layer=partial(HybridEmbed, backbone=backbone, proj=False))
    return model


def check(directory, reference):
    from safetensors.torch import load_file
    config = json.load(open(os.path.join(directory, "config.json")))
    weights = load_file(os.path.join(directory, "model.safetensors"))
    model = build_timm(config, weights)
    had_counter = any(k.endswith("num_batches_tracked") for k in weights)
    model.load_state_dict(weights, strict=True)
    model.eval()
    ref = load_file(reference)
    with torch.no_grad():
        logits = model(ref["images_224"])
        features = model.forward_head(model.forward_features(ref["images_224"]), pre_logits=True)
    want = ref["logits_224"]
    diff = (logits - want).abs().max().item()
    rel = diff / want.abs().max().item()
    out = {"check_timm_import": "ok" if rel <= TOLERANCE else "MISMATCH",
           "model_dir": directory, "architecture": config.get("architecture"),
           "tensors": len(weights), "num_batches_tracked_in_file": had_counter,
           "max_abs_logit_diff": diff, "max_rel_logit_diff": rel,
           "max_abs_logit": want.abs().max().item()}
    if "features_224" in ref:
        out["max_abs_feature_diff"] = (features - ref["features_224"]).abs().max().item()
    print(json.dumps(out))
    return 0 if rel <= TOLERANCE else 1


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model_dir", nargs="?", help="catlip model directory (omit with --from-pt)")
    p.add_argument("reference", help="reference.safetensors (images_224, logits_224)")
    p.add_argument("--from-pt", metavar="PT", help="a corenet .pt state dict to convert first")
    p.add_argument("--keep", metavar="DIR", help="with --from-pt: write the model dir here "
                   "and keep it (default: a temporary directory, removed)")
    a = p.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    if a.from_pt:
        if a.model_dir:
            p.error("give either MODEL_DIR or --from-pt, not both")
        directory = a.keep or tempfile.mkdtemp(prefix="catlip-corenet-")
        try:
            write_model_dir(a.from_pt, directory)
            return check(directory, a.reference)
        finally:
            if not a.keep:
                shutil.rmtree(directory, ignore_errors=True)
    if not a.model_dir:
        p.error("MODEL_DIR or --from-pt is required")
    return check(a.model_dir, a.reference)


if __name__ == "__main__":
    sys.exit(main())
