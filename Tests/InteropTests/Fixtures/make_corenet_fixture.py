#!/usr/bin/env python3
"""Write Tests/InteropTests/Fixtures/corenet/: a small CatLIP checkpoint in Apple corenet's own
layout and corenet's outputs for it, for the importer of released CatLIP models (issue 22).

Regenerate by hand (the Swift build and CI do not need Python):

    PY=/opt/catlip-peers/bin/python
    $PY Tests/InteropTests/Fixtures/make_corenet_fixture.py                 # committed fixture
    $PY Tests/InteropTests/Fixtures/make_corenet_fixture.py --preset b16 --depth 2 --out /tmp/cn-b16

The reference is corenet's OWN code, not a re-implementation: the script imports corenet's
`VisionTransformer` (corenet/modeling/models/classification/vit.py) from a source checkout
(--corenet-src, default: `git archive HEAD` of the local mirror /work/.mirror/apple+corenet/repo
into a temporary directory) and builds it from an opts namespace through
`corenet.modeling.get_model`, with the settings of corenet's projects/catlip/pretraining/
vit_base.yaml: norm_layer layer_norm_fp32, use_flash_attention true (so the attention output
projection is `out_proj_attn`, as in the released checkpoints; --attention naive gives the
non-flash MultiHeadAttention and its `out_proj`), activation gelu, RangeAugment
(learn_augmentation brightness/contrast/noise, mode distribution: the six scalar
`neural_augmentor.{brightness,contrast,noise}._{low,high}` parameters). corenet is not on PyPI
(the `corenet` package there is an empty 0.0.0 placeholder), and its option parser imports its
whole data stack; so the script parses only corenet's modeling arguments
(`corenet.modeling.modeling_arguments` + `corenet.options.opts.parser_to_opts`), stubs the few
third-party modules that corenet imports at module level but the model never uses (av, boto3,
ftfy, joblib, requests, coremltools) when they are not installed, and registers the two
torchvision op schemas that a CUDA torchvision next to CPU torch lacks (see
Benchmarks/peers/vit_torch.py). Depth is reduced by wrapping corenet's get_configuration.

What corenet's code does (checked in its source and visible in the printed model):
  stem (vit.py _build_patch_embedding_layer): ConvLayer2d(3->W, k4 s4, no bias) + BatchNorm2d +
  GELU, ConvLayer2d(W->W, k2 s2, no bias) + BatchNorm2d + GELU, ConvLayer2d(W->D, k2 s2, bias),
  W = max(32, D // 4); ConvLayer2d pads int((k - 1) / 2) * dilation (layers/conv_layer.py), so
  paddings are 1, 0, 0; BatchNorm eps 1e-5, momentum 0.1 (model.normalization.momentum
  default, layers/normalization/__init__.py). Position embedding [1, 1, 196, D] added to the
  patch tokens only, resized with F.interpolate(size=(N, D), mode="bilinear") for N != 196
  (layers/positional_embedding.py); class token prepended after. Pre-norm blocks, LayerNorm eps
  1e-6 (update_layer_norm_eps), exact GELU, post_transformer_norm, class token, classifier.

Contents (weights random, seeded; deterministic):
  tiny.pt  torch.save of the plain state dict (an OrderedDict with corenet's key names, as in
           corenet's EMA checkpoints), including the six neural_augmentor scalars and BatchNorm
           running statistics (non-trivial) and num_batches_tracked (nonzero int64).
  vocab.pkl  pickle of {synset: count} with V + 5 keys "n<offset>" (WordNet 3.0 noun offsets
           without zero padding, from /usr/share/wordnet/data.noun), counts descending; the
           first V are the classifier rows (corenet's wordnet_tagged_classification reads
           list(vocab.keys())[:vocab_size]).
  reference.safetensors (F32, eval mode): images_224 [2,3,224,224] smooth, in [0, 1];
           logits_224 [2,V]; features_224 [2,D] (normed class token, the classifier's input);
           stem_224 [2,196,D] (stem output as tokens, before the position embedding);
           images_256 [1,3,256,256]; logits_256 [1,V] (position embedding resized to 256).
  stem_train.safetensors (F32, the stem alone in training mode, BatchNorm on batch statistics,
           starting from tiny.pt's running statistics): x [4,3,64,64]; y [4,16,D] (tokens);
           dy [4,16,D]; for loss = sum(y * dy): dx and grad.<corenet name> of every stem
           parameter; after.<corenet name>.running_{mean,var} of both BatchNorms after that one
           forward (momentum 0.1, unbiased batch variance).
Presets: tiny (default: D 192, 3 heads, depth 2, MLP 4x, V 40, stem width 48) and b16 (D 768,
12 heads, V 24320, stem width 192); --depth and --vocab override.
"""

import argparse
import atexit
import enum
import importlib.abc
import importlib.machinery
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import types
from collections import OrderedDict
from unittest import mock

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
MIRROR = "/work/.mirror/apple+corenet/repo"
PRESETS = {
    "tiny": {"mode": "tiny", "dim": 192, "heads": 3, "vocab": 40},
    "b16": {"mode": "base", "dim": 768, "heads": 12, "vocab": 24320},
}
# Modules corenet imports at module level on the way to its model code but never calls for it.
OPTIONAL_ROOTS = {"av", "boto3", "ftfy", "joblib", "requests", "coremltools"}


# ---------------------------------------------------------------- importing corenet


class _StubMissing(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Stands in a MagicMock module for an OPTIONAL_ROOTS module that is not installed."""

    def find_spec(self, name, path, target=None):
        root = name.split(".")[0]
        if root not in OPTIONAL_ROOTS:
            return None
        if name == root and importlib.machinery.PathFinder.find_spec(root) is not None:
            return None
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def create_module(self, spec):
        m = mock.MagicMock()
        m.__path__, m.__name__, m.__spec__ = [], spec.name, spec
        if spec.name == "coremltools":  # opts.py lists these enums as argparse choices
            m.target = enum.Enum("target", "iOS15")
            m.precision = enum.Enum("precision", "FLOAT32")
        return m

    def exec_module(self, module):
        pass


_TV_LIB = None


def _torchvision_schemas():
    """A CUDA torchvision next to CPU torch fails on import until these two schemas exist."""
    global _TV_LIB
    try:
        import torchvision  # noqa: F401
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
        for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        _TV_LIB = torch.library.Library("torchvision", "DEF")
        _TV_LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TV_LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def corenet_source(arg):
    """(path to a directory holding corenet/, description of the source)."""
    if arg:
        return arg, f"corenet source {os.path.abspath(arg)}"
    commit = subprocess.run(["git", "-C", MIRROR, "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    tmp = tempfile.mkdtemp(prefix="corenet-src-")
    atexit.register(shutil.rmtree, tmp, True)
    archive = subprocess.run(["git", "-C", MIRROR, "archive", "HEAD", "corenet"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
    return tmp, f"apple/corenet@{commit}"


def import_corenet(src):
    sys.meta_path.append(_StubMissing())
    _torchvision_schemas()
    sys.path.insert(0, src)
    import corenet.modeling.models.classification.vit as vit_module
    from corenet.modeling import modeling_arguments
    from corenet.modeling.models import get_model
    from corenet.options.opts import parser_to_opts
    return vit_module, modeling_arguments, get_model, parser_to_opts


def build_corenet_vit(a, src):
    vit_module, modeling_arguments, get_model, parser_to_opts = import_corenet(src)
    depth = a.depth
    original = vit_module.get_configuration

    def reduced_depth(opts):
        cfg = dict(original(opts))
        cfg["n_transformer_layers"] = depth
        return cfg

    vit_module.get_configuration = reduced_depth
    opts = parser_to_opts(modeling_arguments(argparse.ArgumentParser()), [])
    settings = {  # projects/catlip/pretraining/vit_base.yaml, model section
        "model.classification.name": "vit",
        "model.classification.n_classes": a.vocab,
        "model.classification.vit.mode": PRESETS[a.preset]["mode"],
        "model.classification.vit.norm_layer": "layer_norm_fp32",
        "model.classification.vit.use_flash_attention": a.attention == "flash",
        "model.learn_augmentation.brightness": True,
        "model.learn_augmentation.contrast": True,
        "model.learn_augmentation.noise": True,
        "model.learn_augmentation.mode": "distribution",
        "model.activation.name": "gelu",
        "model.layer.conv_init": "kaiming_normal",
        "model.layer.linear_init": "trunc_normal",
        "model.layer.linear_init_std_dev": 0.02,
    }
    for key, value in settings.items():
        assert hasattr(opts, key), key
        setattr(opts, key, value)
    setattr(opts, "dataset.category", "classification")  # read by get_model
    torch.manual_seed(a.seed)
    model = get_model(opts)
    vit_module.get_configuration = original
    return model


# ---------------------------------------------------------------- weights and data


def randomise(model, gen, calib):
    """Non-trivial random weights so that every part of the network shows in the outputs."""
    sd = model.state_dict()
    new = OrderedDict()
    for k, v in sd.items():
        if k.startswith("neural_augmentor."):
            new[k] = v.clone()  # corenet's own initial values; the importer drops them
        elif k.endswith("num_batches_tracked"):
            new[k] = torch.tensor(12345, dtype=torch.int64)
        elif k.endswith("running_mean") or k.endswith("running_var"):
            new[k] = v.clone()  # set from calibration below
        elif v.ndim >= 2 and k != "cls_token" and not k.startswith("pos_embed"):
            fan_in = v[0].numel()
            new[k] = torch.randn(v.shape, generator=gen) / fan_in ** 0.5
        elif k.endswith(".weight"):  # LayerNorm / BatchNorm scale
            new[k] = 1.0 + 0.2 * torch.randn(v.shape, generator=gen)
        elif k == "cls_token" or k.startswith("pos_embed"):
            new[k] = 0.5 * torch.randn(v.shape, generator=gen)
        else:  # biases
            new[k] = 0.1 * torch.randn(v.shape, generator=gen)
    model.load_state_dict(new, strict=True)

    # Running statistics: the batch statistics of `calib`, perturbed, so that eval-mode BN
    # neither equals training-mode BN nor blows the activations up.
    stem = model.patch_emb
    h = calib
    with torch.no_grad():
        for i in (0, 1):
            conv, norm = stem[i].block.conv, stem[i].block.norm
            z = conv(h)
            mean = z.mean(dim=(0, 2, 3))
            var = z.var(dim=(0, 2, 3))
            norm.running_mean.copy_(mean + 0.3 * var.sqrt() * torch.randn(mean.shape, generator=gen))
            norm.running_var.copy_(var * (0.5 + 1.5 * torch.rand(var.shape, generator=gen)))
            h = stem[i](h)  # eval mode: what the next layer sees at inference
    return model


def smooth_images(n, size, gen):
    """Random low-frequency colour fields (bilinear upsampling of 7x7 noise) plus a little
    pixel noise, clamped to [0, 1]."""
    base = torch.rand(n, 3, 7, 7, generator=gen)
    x = F.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    x = x + 0.02 * torch.randn(x.shape, generator=gen)
    return x.clamp(0.0, 1.0).contiguous()


def wordnet_vocab(count, gen):
    """{"n<offset>": count} for `count` WordNet noun synsets, counts descending."""
    path = "/usr/share/wordnet/data.noun"
    offsets = []
    with open(path, encoding="latin-1") as f:
        for line in f:
            if not line.startswith(" "):  # licence header lines start with two spaces
                offsets.append(int(line.split(" ", 1)[0]))
    pick = torch.randperm(len(offsets), generator=gen)[:count].tolist()
    counts = sorted(torch.randint(500, 10_000_000, (count,), generator=gen).tolist(), reverse=True)
    return OrderedDict((f"n{offsets[i]}", int(c)) for i, c in zip(pick, counts)), path


def tokens(t):  # (B, D, h, w) -> (B, h*w, D), as extract_patch_embeddings does
    return t.flatten(2).transpose(1, 2).contiguous()


# ---------------------------------------------------------------- main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--vocab", type=int, default=None, help="classes (default: the preset's)")
    p.add_argument("--attention", choices=["flash", "naive"], default="flash",
                   help="corenet's FlashTransformerEncoder (out_proj_attn; the CatLIP configs) "
                        "or TransformerEncoder (out_proj)")
    p.add_argument("--out", default=os.path.join(HERE, "corenet"))
    p.add_argument("--corenet-src", default=None,
                   help="directory holding corenet/ (default: git archive of the local mirror)")
    p.add_argument("--seed", type=int, default=22)
    a = p.parse_args(argv)
    if a.vocab is None:
        a.vocab = PRESETS[a.preset]["vocab"]
    torch.set_num_threads(1)  # bitwise-repeatable float reductions

    src, source = corenet_source(a.corenet_src)
    model = build_corenet_vit(a, src)
    dim = PRESETS[a.preset]["dim"]
    assert model.embed_dim == dim and len(model.transformer) == a.depth
    print(model, file=sys.stderr)

    gen = torch.Generator().manual_seed(a.seed)
    calib = smooth_images(4, 224, gen)
    model.eval()
    randomise(model, gen, calib)
    os.makedirs(a.out, exist_ok=True)

    state = OrderedDict((k, v.detach().clone()) for k, v in model.state_dict().items())
    torch.save(state, os.path.join(a.out, "tiny.pt"))

    vocab, vocab_src = wordnet_vocab(a.vocab + 5, gen)
    with open(os.path.join(a.out, "vocab.pkl"), "wb") as f:
        pickle.dump(dict(vocab), f)

    from safetensors.torch import save_file
    # One metadata key: safetensors writes a multi-key map in hash order (not byte-stable).
    meta = {"source": source, "preset": a.preset, "depth": str(a.depth),
            "vocab": str(a.vocab), "attention": a.attention, "seed": str(a.seed),
            "torch": torch.__version__, "script": "Tests/InteropTests/Fixtures/make_corenet_fixture.py"}
    meta = {"made_by": json.dumps(meta, sort_keys=True)}

    # ---- eval-mode references through corenet's forward paths
    images_224 = smooth_images(2, 224, gen)
    images_256 = smooth_images(1, 256, gen)
    with torch.no_grad():
        out = model(images_224)  # a dict because neural_augmentor is set; not applied in eval
        logits_224 = out["logits"] if isinstance(out, dict) else out
        features_224, _ = model.extract_features(images_224)
        stem_224 = tokens(model.patch_emb(images_224))
        out = model(images_256)
        logits_256 = out["logits"] if isinstance(out, dict) else out
        assert torch.allclose(model.classifier(features_224), logits_224, atol=1e-5)
    ref = {"images_224": images_224, "logits_224": logits_224, "features_224": features_224,
           "stem_224": stem_224, "images_256": images_256, "logits_256": logits_256}
    save_file({k: v.float().contiguous() for k, v in ref.items()},
              os.path.join(a.out, "reference.safetensors"), metadata=meta)

    # ---- the stem alone in training mode (batch statistics, running stats updated once)
    stem = model.patch_emb
    stem.train()
    x = smooth_images(4, 64, gen).requires_grad_(True)
    y = tokens(stem(x))
    dy = torch.randn(y.shape, generator=gen)
    (y * dy).sum().backward()
    train = {"x": x.detach(), "y": y.detach(), "dy": dy, "dx": x.grad}
    for name, prm in stem.named_parameters():
        train[f"grad.patch_emb.{name}"] = prm.grad
    for name, buf in stem.named_buffers():
        if name.endswith("running_mean") or name.endswith("running_var"):
            train[f"after.patch_emb.{name}"] = buf.detach()
    save_file({k: v.float().contiguous() for k, v in train.items()},
              os.path.join(a.out, "stem_train.safetensors"), metadata=meta)
    stem.eval()

    sizes = {f: os.path.getsize(os.path.join(a.out, f)) for f in sorted(os.listdir(a.out))}
    print(f"{source}; vocab from {vocab_src}; wrote {a.out}: "
          + ", ".join(f"{f} {s / 1e6:.2f} MB" for f, s in sizes.items())
          + f"; total {sum(sizes.values()) / 1e6:.2f} MB; logits_224 std "
          + f"{logits_224.std().item():.3f}; |logits_256 - logits_224[0]| mean "
          + f"{(logits_256[0] - logits_224[0]).abs().mean().item():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
