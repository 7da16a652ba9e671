#!/usr/bin/env python3
"""Write the resize/crop fixtures that Tests/ImagingTests/ResizeTests.swift checks catlip against.

Every expected image here is produced by Pillow or torchvision themselves (not by a
re-implementation), so the Swift tests compare against the real peers:

- ``resize``        Pillow ``Image.resize((w, h), BILINEAR|BICUBIC, box)`` (box optional, may be
                    fractional), RGB.
- ``crop``          Pillow ``Image.crop((x, y, x + w, y + h))``, also partly outside (black).
- ``resized_crop``  torchvision ``F.resized_crop(img, top, left, height, width, [oh, ow],
                    interp)`` on a PIL image (crop, then Pillow resize).
- ``shorter_side``  torchvision ``Resize(size)`` (int: shorter side) then ``CenterCrop((ch, cw))``
                    when a crop is given, including crops larger than the image (black padding).
- ``timm_eval``     timm's eval preprocessing for a square ``img_size`` (crop_mode "center"):
                    ``Resize(floor(img_size / crop_pct))`` then ``CenterCrop(img_size)``. timm is
                    not installed in the peer venv; its ``transforms_imagenet_eval`` does exactly
                    this with torchvision's ``Resize``/``CenterCrop``
                    (``math.floor(img_size / crop_pct)``), so the script composes the same
                    torchvision transforms.

Besides images, ``manifest.json`` holds geometry read off torchvision:
``resized_size`` (``F.resize`` with an int on a PIL image of that size), ``center_crop_origin``
(``F.center_crop`` on an image whose pixels encode their own coordinates), ``eval_resize_size``
(``math.floor(size / crop_pct)``), ``rrc_fallback`` (``RandomResizedCrop.get_params`` with scale
and ratio ranges that can never fit, so it always returns its centre-crop fallback) and
``rrc_scripted`` (``get_params`` with ``torch.empty(1).uniform_`` and ``torch.randint`` replaced by
scripted draws; each draw is also given as the raw 64-bit word that makes catlip's
``Geometry.randomResizedCrop`` draw the same value: ``Geometry.uniform`` uses the top 53 bits,
``Int.random(in:)`` the high word of ``word * n``).

``rrc_stats`` holds torchvision's own ``get_params`` statistics (torch.manual_seed(0), 20000
draws per configuration): mean area fraction and mean log aspect ratio.

Pillow 13 details the expected images depend on, which the script checks with a small numpy
re-implementation of Pillow's 8-bit resampler (``PillowReference``; it must reproduce every
expected image exactly, or the script stops):

- Pass order. Pillow <= 12 always resamples horizontally first (8-bit rounding in between).
  Pillow 13 (python-pillow/Pillow#9549, "If height is scaled down significantly more than width,
  resize vertically first") runs the vertical pass first when ``ysize < in_ysize`` and
  ``in_ysize - ysize > 2 * (in_xsize - xsize)`` (sizes of the whole input image, not of the box;
  strict inequality). The rule was read off Pillow 13.0.0's output (~700 random size/box probes
  where the two orders differ; no exception); the PR's diff is not available offline. Each case
  records it as ``pillow_vertical_first`` (for resized_crop: input = the crop).
- Box precision. ``Image.resize(box=...)`` hands the box to C as ``float[4]`` (float32), and the
  scale is ``(double)(box[2] - box[0]) / xsize`` with the subtraction in float32. Box cases record
  the float32 values as ``box_float32``.

Inputs (deterministic, numpy seed 2024): ``input_a.png`` 97x61 (gradients, noise, sharp edges,
stripes), ``input_b.png`` 40x40 (checkerboard, ramps, noise), ``input_c.png`` 13x200 (very
elongated). All files are RGB PNGs; the whole folder stays well under 300 KB.

Regenerate (by hand; the Swift build does not need Python):

    /opt/catlip-peers/bin/python Tests/ImagingTests/Fixtures/make_resize_fixtures.py

The peer venv has torch 2.13.0+cpu, torchvision 0.28.0 and Pillow 13.0.0. That torchvision is a
CUDA build whose import fails next to CPU torch ("operator torchvision::nms does not exist"); the
script defines the schemas of the two ops it registers (torchvision::nms, torchvision::qnms)
with torch.library and imports again (the PIL transforms do not need the compiled ops). Output is
byte-identical on every run for the same Pillow/torchvision versions; the script deletes and
rewrites ``resize/``.
"""

import json
import math
import os
import random
import shutil
import sys

import numpy as np
import torch
import torch.library
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "Benchmarks", "peers"))
from torchvision_compat import import_torchvision  # noqa: E402

torchvision = import_torchvision()
import torchvision.transforms as T  # noqa: E402
import torchvision.transforms.functional as F  # noqa: E402
from torchvision.transforms import InterpolationMode  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "resize")

PIL_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
TV_FILTERS = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


# ---------------------------------------------------------------- inputs

def make_inputs(rng):
    """Three RGB images that stress resampling: smooth ramps, full-range noise (bicubic
    overshoot is clipped), hard 0/255 edges and 1-pixel stripes."""
    # a: 97x61
    h, w = 61, 97
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    a = np.zeros((h, w, 3))
    a[..., 0] = x * 255 / (w - 1)
    a[..., 1] = y * 255 / (h - 1)
    a[..., 2] = 128 + 127 * np.sin(x / 5.0 + y / 7.0)
    a += rng.normal(0, 18, size=a.shape)
    a[10:30, 60:85] = [255, 255, 255]                  # white block, hard edges
    a[40:55, 5:20] = [0, 0, 0]                         # black block
    a[:, 30:40:2] = [255, 0, 255]                      # 1-px stripes
    a[np.abs(x - 1.4 * y - 20) < 1.0] = [0, 255, 0]    # thin diagonal
    a[50:61, 70:97] = rng.integers(0, 256, size=(11, 27, 3))  # pure noise corner
    a = np.clip(np.rint(a), 0, 255).astype(np.uint8)

    # b: 40x40
    h, w = 40, 40
    y, x = np.mgrid[0:h, 0:w]
    b = np.zeros((h, w, 3), dtype=np.float64)
    checker = ((x // 4 + y // 4) % 2) * 255
    b[..., 0] = checker
    b[..., 1] = (x * 6 + y * 3) % 256
    b[..., 2] = 255 - y * 6
    b[25:35, 5:15] = rng.integers(0, 256, size=(10, 10, 3))
    b = np.clip(b, 0, 255).astype(np.uint8)

    # c: 13x200
    h, w = 200, 13
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    c = np.zeros((h, w, 3))
    c[..., 0] = 127.5 + 127.5 * np.cos(y / 9.0)
    c[..., 1] = (y % 17) * 15
    c[..., 2] = x * 255 / (w - 1)
    c += rng.normal(0, 10, size=c.shape)
    c[90:110] = [255, 255, 255]
    c[::23, :] = [0, 0, 0]
    c = np.clip(np.rint(c), 0, 255).astype(np.uint8)
    return {"a": a, "b": b, "c": c}


# ---------------------------------------------------------------- helpers

def save_png(img, name):
    assert img.mode == "RGB", img.mode
    img.save(os.path.join(OUT, name), format="PNG", optimize=False, compress_level=9)
    return name


def fmt(v):
    return ("%g" % v).replace(".", "p").replace("-", "m")


# ---------------------------------------------------------------- Pillow 13 reference

class PillowReference:
    """Pillow 13's 8-bit resize (Resample.c) for RGB, in numpy: precompute_coeffs with a float32
    box, 22-bit fixed-point weights, clip8 after each pass, and Pillow 13's pass order."""

    PRECISION_BITS = 22

    @staticmethod
    def vertical_first(in_w, in_h, w, h):
        return h < in_h and in_h - h > 2 * (in_w - w)

    @staticmethod
    def _filter(name, x):
        x = abs(x)
        if name == "bilinear":
            return 1.0 - x if x < 1.0 else 0.0
        a = -0.5
        if x < 1.0:
            return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
        if x < 2.0:
            return (((x - 5) * x + 8) * x - 4) * a
        return 0.0

    @classmethod
    def _coeffs(cls, in_size, in0, in1, out_size, name):
        in0, in1 = np.float32(in0), np.float32(in1)
        scale = float(in1 - in0) / out_size           # float32 subtraction, as in C
        filterscale = max(scale, 1.0)
        support = (1.0 if name == "bilinear" else 2.0) * filterscale
        taps = []
        for xx in range(out_size):
            center = float(in0) + (xx + 0.5) * scale
            xmin = max(int(center - support + 0.5), 0)
            xmax = min(int(center + support + 0.5), in_size) - xmin
            k = [cls._filter(name, (x + xmin - center + 0.5) / filterscale) for x in range(xmax)]
            total = 0.0
            for v in k:
                total += v
            if total != 0.0:
                k = [v / total for v in k]
            one = 1 << cls.PRECISION_BITS
            k = [int(-0.5 + v * one) if v < 0 else int(0.5 + v * one) for v in k]
            taps.append((xmin, k))
        return taps

    @classmethod
    def _pass(cls, img, taps):  # along axis 1 of (rows, cols, 3)
        out = np.zeros((img.shape[0], len(taps), 3), dtype=np.int64)
        for i, (xmin, k) in enumerate(taps):
            acc = np.full((img.shape[0], 3), 1 << (cls.PRECISION_BITS - 1), dtype=np.int64)
            for j, w in enumerate(k):
                acc += img[:, xmin + j, :] * w
            out[:, i, :] = np.clip(acc >> cls.PRECISION_BITS, 0, 255)
        return out

    @classmethod
    def resize(cls, arr, w, h, name, box=None):
        in_h, in_w = arr.shape[:2]
        box = (0, 0, in_w, in_h) if box is None else box
        if (w, h) == (in_w, in_h) and tuple(box) == (0, 0, in_w, in_h):
            return arr.copy()
        need_h = w != in_w or box[0] != 0 or box[2] != w
        need_v = h != in_h or box[1] != 0 or box[3] != h
        horizontal = cls._coeffs(in_w, box[0], box[2], w, name)
        vertical = cls._coeffs(in_h, box[1], box[3], h, name)
        x = arr.astype(np.int64)
        def hpass(x):
            return cls._pass(x, horizontal) if need_h else x
        def vpass(x):
            return cls._pass(x.transpose(1, 0, 2), vertical).transpose(1, 0, 2) if need_v else x
        x = hpass(vpass(x)) if cls.vertical_first(in_w, in_h, w, h) else vpass(hpass(x))
        return x.astype(np.uint8)


def check_reference(case, images, result):
    """Stops the script unless PillowReference reproduces the peer's image exactly."""
    arr = images[case["input"]]
    kind = case["kind"]
    if kind == "resize":
        box = case["box"]
        want = PillowReference.resize(arr, case["width"], case["height"], case["filter"], box)
    elif kind == "resized_crop":
        t, l, hh, ww = case["top"], case["left"], case["height"], case["width"]
        want = PillowReference.resize(arr[t:t + hh, l:l + ww], case["out_width"],
                                      case["out_height"], case["filter"])
    elif kind in ("shorter_side", "timm_eval"):
        size = case["size"] if kind == "shorter_side" else case["scale_size"]
        rw, rh = F.resize(Image.fromarray(arr), size).size
        resized = PillowReference.resize(arr, rw, rh, case["filter"])
        want = np.asarray(Image.fromarray(resized))
        if kind == "timm_eval":
            want = np.asarray(F.center_crop(Image.fromarray(resized), case["size"]))
        elif case["crop_width"] is not None:
            want = np.asarray(F.center_crop(Image.fromarray(resized),
                                            [case["crop_height"], case["crop_width"]]))
    else:
        return
    got = np.asarray(result)
    if want.shape != got.shape or not np.array_equal(want, got):
        raise SystemExit(f"{case['name']}: PillowReference differs from Pillow {Image.__version__}")


def resize_step(case, images):
    """(input width, input height, output width, output height) of the case's Pillow resize."""
    arr = images[case["input"]]
    in_h, in_w = arr.shape[:2]
    kind = case["kind"]
    if kind == "resize":
        return in_w, in_h, case["width"], case["height"]
    if kind == "resized_crop":
        return case["width"], case["height"], case["out_width"], case["out_height"]
    if kind in ("shorter_side", "timm_eval"):
        size = case["size"] if kind == "shorter_side" else case["scale_size"]
        rw, rh = F.resize(Image.fromarray(arr), size).size
        return in_w, in_h, rw, rh
    return None


# ---------------------------------------------------------------- image cases

def image_cases(images):
    cases = []

    def add(case, result):
        check_reference(case, images, result)
        step = resize_step(case, images)
        if step is not None:
            case["pillow_vertical_first"] = PillowReference.vertical_first(*step)
        if case.get("box") is not None:
            case["box_float32"] = [float(np.float32(v)) for v in case["box"]]
        case["expected"] = save_png(result, case["name"] + ".png")
        case["expected_width"], case["expected_height"] = result.size
        cases.append(case)

    # Pillow resize, whole image or box.
    resizes = [
        ("a", 31, 20, None),            # down
        ("b", 64, 57, None),            # up
        ("a", 200, 17, None),           # up in x, down in y
        ("a", 11, 120, None),           # down in x, up in y
        ("a", 1, 1, None),              # to one pixel
        ("a", 97, 30, None),            # vertical pass only
        ("a", 41, 61, None),            # horizontal pass only
        ("c", 1, 1, None),
        ("c", 40, 7, None),
        ("c", 5, 333, None),
        ("b", 40, 40, None),            # identity: Pillow returns a copy
        ("b", 23, 23, None),
        ("a", 33, 27, (3.25, 5.5, 80.75, 50.1)),     # fractional box, down
        ("a", 45, 31, (10.3, 7.7, 20.9, 15.2)),      # fractional box, up
        ("b", 40, 40, (0.5, 0.25, 39.5, 39.75)),     # same size, shifted box
        ("b", 40, 40, (0.5, 0.0, 40.0, 40.0)),       # horizontal pass only (box)
        ("b", 16, 9, (0.0, 0.0, 40.0, 39.9)),
        ("c", 9, 50, (1.5, 100.0, 12.0, 199.5)),
    ]
    for name, w, h, box in resizes:
        for f in ("bilinear", "bicubic"):
            img = Image.fromarray(images[name])
            box_name = "" if box is None else "_box" + "_".join(fmt(v) for v in box)
            add({"name": f"resize_{name}_{w}x{h}{box_name}_{f}", "kind": "resize", "input": name,
                 "filter": f, "width": w, "height": h, "box": None if box is None else list(box)},
                img.resize((w, h), PIL_FILTERS[f], box=box))

    # Pillow crop, inside and partly outside the image.
    for name, x, y, w, h in [("a", 5, 7, 30, 20), ("a", -4, -3, 20, 15), ("a", 90, 55, 12, 10),
                             ("b", -5, 10, 50, 5), ("c", 0, 190, 13, 20)]:
        img = Image.fromarray(images[name])
        add({"name": f"crop_{name}_{fmt(x)}_{fmt(y)}_{w}x{h}", "kind": "crop", "input": name,
             "x": x, "y": y, "width": w, "height": h},
            img.crop((x, y, x + w, y + h)))

    # torchvision resized_crop (top, left, height, width) -> (out_h, out_w).
    rcrops = [
        ("a", 0, 0, 61, 97, 32, 32),      # whole image, non-uniform scale
        ("a", 5, 10, 40, 30, 24, 24),     # down
        ("a", 20, 50, 11, 47, 16, 16),    # wide crop, to square
        ("a", 50, 80, 11, 17, 32, 32),    # bottom-right corner, up
        ("a", 3, 7, 1, 1, 8, 8),          # one pixel
        ("a", 0, 96, 61, 1, 5, 5),        # last column
        ("a", 13, 17, 29, 23, 20, 28),    # non-square output
        ("b", 0, 0, 40, 40, 24, 24),
        ("b", 10, 10, 20, 20, 32, 32),    # up
        ("b", 3, 9, 17, 31, 17, 31),      # same size as crop: just a crop
        ("b", 20, 5, 20, 10, 7, 13),
        ("c", 0, 0, 200, 13, 16, 16),
        ("c", 80, 2, 40, 9, 24, 24),
        ("c", 150, 0, 13, 13, 13, 40),
    ]
    for name, top, left, h, w, oh, ow in rcrops:
        for f in ("bilinear", "bicubic"):
            img = Image.fromarray(images[name])
            add({"name": f"rcrop_{name}_{top}_{left}_{h}x{w}_to_{oh}x{ow}_{f}",
                 "kind": "resized_crop", "input": name, "filter": f, "top": top, "left": left,
                 "height": h, "width": w, "out_height": oh, "out_width": ow},
                F.resized_crop(img, top, left, h, w, [oh, ow], interpolation=TV_FILTERS[f]))

    # torchvision Resize(size) [+ CenterCrop((ch, cw))].
    # a -> Resize(24) is 38x24: crops 37x23 / 35x21 / 33x19 put the centre offset at 0.5 / 1.5 /
    # 2.5 on both axes (round half to even: 0, 2, 2).
    shorter = [
        ("a", 24, None),
        ("a", 24, (20, 20)),
        ("a", 24, (23, 37)),
        ("a", 24, (21, 35)),
        ("a", 24, (19, 33)),
        ("a", 24, (40, 40)),     # larger than 38x24: padded 1/1 and 8/8
        ("a", 24, (27, 41)),     # odd padding: left 1 right 2, top 1 bottom 2
        ("a", 24, (30, 10)),     # taller than the image only
        ("a", 40, (36, 36)),     # up
        ("c", 8, None),          # shorter side is the width: 8x123
        ("c", 8, (8, 8)),
        ("c", 8, (50, 11)),      # padded in width only
        ("c", 20, (16, 16)),
        ("c", 3, (5, 5)),        # 3x46 -> padded in width
        ("b", 17, (12, 12)),
        ("b", 17, (12, 16)),     # (17 - 12) / 2 = 2.5 -> 2
        ("b", 40, (41, 41)),     # same size (no resize) then pad
        ("b", 64, (57, 57)),     # (64 - 57) / 2 = 3.5 -> 4
    ]
    for name, size, crop in shorter:
        for f in ("bilinear", "bicubic"):
            img = Image.fromarray(images[name])
            ops = [T.Resize(size, interpolation=TV_FILTERS[f])]
            crop_name = ""
            if crop is not None:
                ops.append(T.CenterCrop(crop))  # (height, width)
                crop_name = f"_crop{crop[0]}x{crop[1]}"
            add({"name": f"shorter_{name}_{size}{crop_name}_{f}", "kind": "shorter_side",
                 "input": name, "filter": f, "size": size,
                 "crop_height": None if crop is None else crop[0],
                 "crop_width": None if crop is None else crop[1]},
                T.Compose(ops)(img))

    # timm eval: Resize(floor(size / crop_pct)) + CenterCrop(size).
    for name in ("a", "b", "c"):
        for pct in (0.875, 0.9):
            for f in ("bilinear", "bicubic"):
                size = 32
                scale_size = math.floor(size / pct)
                img = Image.fromarray(images[name])
                t = T.Compose([T.Resize(scale_size, interpolation=TV_FILTERS[f]),
                               T.CenterCrop(size)])
                add({"name": f"timm_{name}_{size}_{fmt(pct)}_{f}", "kind": "timm_eval",
                     "input": name, "filter": f, "size": size, "crop_pct": pct,
                     "scale_size": scale_size},
                    t(img))
    return cases


# ---------------------------------------------------------------- geometry

def geometry():
    g = {}
    rows = []
    for w, h, s in [(97, 61, 24), (61, 97, 24), (13, 200, 8), (200, 13, 8), (40, 40, 17),
                    (500, 375, 256), (375, 500, 256), (500, 375, 224), (333, 500, 224),
                    (7, 3, 10), (3, 1000, 5), (640, 480, 1), (1, 1, 3), (299, 300, 299)]:
        out = F.resize(Image.new("RGB", (w, h)), s, interpolation=InterpolationMode.BILINEAR)
        rows.append({"width": w, "height": h, "shorter_side": s,
                     "out_width": out.size[0], "out_height": out.size[1]})
    g["resized_size"] = rows

    rows = []
    for w, h, cw, ch in [(38, 24, 37, 23), (38, 24, 35, 21), (38, 24, 33, 19), (38, 24, 20, 20),
                         (10, 10, 9, 9), (10, 10, 7, 7), (10, 10, 5, 5), (11, 11, 8, 8),
                         (38, 24, 40, 40), (38, 24, 41, 27), (8, 123, 11, 50), (3, 46, 5, 5),
                         (17, 17, 12, 12), (64, 64, 57, 57), (256, 341, 224, 224),
                         (5, 5, 5, 5), (1, 1, 4, 4), (6, 9, 9, 6)]:
        # Pixels carry their own coordinates (R = x, G = y) and B = 255 marks image pixels;
        # padding is black, so the origin is read off any marked output pixel.
        arr = np.zeros((h, w, 3), dtype=np.uint8)
        yy, xx = np.mgrid[0:h, 0:w]
        arr[..., 0] = xx
        arr[..., 1] = yy
        arr[..., 2] = 255
        out = np.asarray(F.center_crop(Image.fromarray(arr), [ch, cw]))
        oy, ox = [int(v[0]) for v in np.nonzero(out[..., 2] == 255)]
        x0 = int(out[oy, ox, 0]) - ox
        y0 = int(out[oy, ox, 1]) - oy
        rows.append({"width": w, "height": h, "crop_width": cw, "crop_height": ch,
                     "x": x0, "y": y0})
    g["center_crop_origin"] = rows

    rows = []
    for size, pct in [(224, 0.875), (224, 0.9), (224, 0.95), (224, 1.0), (32, 0.875), (32, 0.9),
                      (384, 1.0), (256, 0.95), (7, 0.7), (21, 0.7), (3, 0.3), (100, 0.96)]:
        rows.append({"size": size, "crop_pct": pct, "resize": math.floor(size / pct)})
    g["eval_resize_size"] = rows
    return g


# ---------------------------------------------------------------- RandomResizedCrop

class _Scripted:
    """Replaces torch.empty(1).uniform_ and torch.randint with values drawn by the script."""

    def __init__(self, rng):
        self.rng = rng
        self.draws = []  # dicts: {"kind": "uniform"|"int", ...}
        self.orig_empty = torch.empty
        self.orig_randint = torch.randint

    def empty(self, *args, **kwargs):
        outer = self

        class _E:
            def uniform_(self, a, b):
                a, b = float(a), float(b)
                # u = k / 2^24: exact in float32 and in catlip's 53-bit unit draw.
                k = outer.rng.randrange(1 << 24)
                u = k / float(1 << 24)
                value = a + (b - a) * u
                outer.draws.append({"kind": "uniform", "word": "%016x" % (k << 40),
                                    "unit": u, "low": a, "high": b})
                # torch's own uniform_ on a float32 tensor: a float32 value.
                return torch.tensor([value], dtype=torch.float32)
        return _E()

    def randint(self, low, high, size=None, **kwargs):
        n = high - low
        k = self.rng.randrange(n)
        # The word whose product with n has high word k and low word about 2^63 (never
        # rejected): what Swift's next(upperBound: n) turns into k.
        word = ((2 * k + 1) << 63) // n
        self.draws.append({"kind": "int", "word": "%016x" % word, "bound": n, "value": k})
        return torch.tensor([low + k])

    def __enter__(self):
        torch.empty = self.empty
        torch.randint = self.randint
        return self

    def __exit__(self, *exc):
        torch.empty = self.orig_empty
        torch.randint = self.orig_randint


def rrc_double(width, height, scale, ratio, draws):
    """get_params evaluated entirely in float64 from the same draws (catlip computes in
    double); used to keep only cases whose result does not hinge on float32 rounding."""
    it = iter(draws)
    area = height * width
    lr = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u1 = next(it)["unit"]
        u2 = next(it)["unit"]
        target = area * (scale[0] + (scale[1] - scale[0]) * u1)
        aspect = math.exp(lr[0] + (lr[1] - lr[0]) * u2)
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = next(it)["value"]
            j = next(it)["value"]
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def rrc_cases(rng):
    fallback = []
    for w, h, scale, ratio in [(40, 40, (0.999, 1.0), (2.0, 3.0)),
                               (40, 40, (0.999, 1.0), (0.2, 0.4)),
                               (97, 61, (0.999, 1.0), (2.0, 3.0)),   # h = round(48.5) = 48
                               (61, 97, (0.999, 1.0), (0.2, 0.5)),   # w = round(48.5) = 48
                               (13, 200, (0.9, 1.0), (1.0, 2.0)),
                               (99, 33, (0.95, 1.0), (0.25, 0.5))]:
        img = Image.new("RGB", (w, h))
        torch.manual_seed(0)
        results = {T.RandomResizedCrop.get_params(img, list(scale), list(ratio))
                   for _ in range(20)}
        assert len(results) == 1, results
        i, j, ch, cw = results.pop()
        fallback.append({"width": w, "height": h, "scale": list(scale), "ratio": list(ratio),
                         "x": j, "y": i, "crop_width": cw, "crop_height": ch})

    stats = []
    for w, h in [(500, 375), (375, 500), (97, 61), (40, 40), (13, 200), (1000, 7)]:
        img = Image.new("RGB", (w, h))
        torch.manual_seed(0)
        n, area, log_aspect = 20000, 0.0, 0.0
        for _ in range(n):
            i, j, ch, cw = T.RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3])
            area += cw * ch / (w * h)
            log_aspect += math.log(cw / ch)
        stats.append({"width": w, "height": h, "scale": [0.08, 1.0], "ratio": [3 / 4, 4 / 3],
                      "draws": n, "mean_area_fraction": area / n,
                      "mean_log_aspect": log_aspect / n})

    scripted = []
    configs = [(97, 61, (0.08, 1.0), (3 / 4, 4 / 3))] * 12 + \
              [(40, 40, (0.08, 1.0), (3 / 4, 4 / 3))] * 6 + \
              [(13, 200, (0.08, 1.0), (3 / 4, 4 / 3))] * 3 + \
              [(13, 200, (0.3, 1.0), (0.5, 2.0))] * 3 + \
              [(500, 375, (0.5, 1.0), (0.2, 5.0))] * 6
    for w, h, scale, ratio in configs:
        while True:
            with _Scripted(rng) as s:
                i, j, ch, cw = T.RandomResizedCrop.get_params(
                    Image.new("RGB", (w, h)), list(scale), list(ratio))
            if rrc_double(w, h, scale, ratio, s.draws) == (i, j, ch, cw):
                break
        scripted.append({"width": w, "height": h, "scale": list(scale), "ratio": list(ratio),
                         "words": [d["word"] for d in s.draws],
                         "attempts": sum(d["kind"] == "uniform" for d in s.draws) // 2,
                         "x": j, "y": i, "crop_width": cw, "crop_height": ch})
    return fallback, scripted, stats


def write_manifest(manifest, f):
    """JSON with one line per list element (cases, geometry rows): small and diffable."""
    def dump(value, indent):
        pad = " " * indent
        if isinstance(value, dict) and indent < 2:
            items = [f"{pad} {json.dumps(k)}: {dump(v, indent + 1)}"
                     for k, v in sorted(value.items())]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(value, list) and value and isinstance(value[0], dict):
            items = [pad + " " + json.dumps(v, sort_keys=True) for v in value]
            return "[\n" + ",\n".join(items) + "\n" + pad + "]"
        return json.dumps(value, sort_keys=True)
    f.write(dump(manifest, 0) + "\n")


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    images = make_inputs(np.random.default_rng(2024))
    inputs = {}
    for name, arr in images.items():
        img = Image.fromarray(arr)
        inputs[name] = {"file": save_png(img, f"input_{name}.png"),
                        "width": img.size[0], "height": img.size[1]}
    cases = image_cases(images)
    fallback, scripted, stats = rrc_cases(random.Random(7))
    manifest = {
        "generator": "make_resize_fixtures.py",
        "versions": {"pillow": Image.__version__, "torch": torch.__version__,
                     "torchvision": torchvision.__version__},
        "inputs": inputs,
        "cases": cases,
        "geometry": geometry(),
        "rrc_fallback": fallback,
        "rrc_scripted": scripted,
        "rrc_stats": stats,
    }
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        write_manifest(manifest, f)
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"{len(cases)} image cases, {len(fallback)} fallback, {len(scripted)} scripted crops; "
          f"{len(os.listdir(OUT))} files, {total} bytes in {OUT}")


if __name__ == "__main__":
    main()
