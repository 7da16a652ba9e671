#!/usr/bin/env python3
"""Write deterministic, photo-like JPEGs for the input-pipeline benchmark.

No photo corpus exists offline (see DATA.md, "Real photographs"), so this script
synthesises images that behave like photographs for a JPEG decoder and for
RandomResizedCrop: smooth colour gradients, low-frequency illumination, several
blurred shapes (some sharp-edged), patches of fine texture and mild sensor
noise. At 500x375, quality 90, 4:2:0 the files land around 40-70 KB, close to
real photographs of that size at q90.

Output: DIR/00000.jpg, DIR/00001.jpg, ... Quality 90, 4:2:0 chroma
subsampling, baseline, except about 10% progressive (each image draws it).
Image i depends only on (--seed, i), so --count only changes how many are
written, and the same seed always gives byte-identical files for a given Pillow
version (libjpeg output can differ between Pillow releases).

Requirements: Pillow and numpy only:
    pip install pillow numpy
or use the project's peer venv (/opt/catlip-peers/bin/python).

Usage:
    python3 datasets/make_bench_photos.py --out /tmp/bench-photos
    python3 datasets/make_bench_photos.py --out DIR --count 500 --size 500x375 --seed 0
"""

import argparse
import os
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def smooth_field(rng, h, w, cells, channels=1):
    """Low-frequency random field in [0, 1]: a coarse random grid upsampled bicubically."""
    gh = max(2, int(round(cells * h / max(h, w))) + 1)
    gw = max(2, int(round(cells * w / max(h, w))) + 1)
    out = np.empty((h, w, channels), np.float32)
    for c in range(channels):
        grid = (rng.random((gh, gw)) * 255).astype(np.uint8)
        img = Image.fromarray(grid, "L").resize((w, h), Image.BICUBIC)
        out[..., c] = np.asarray(img, np.float32) / 255.0
    return out


def fractal_texture(rng, h, w, octaves=4, base_cells=24):
    """Zero-mean multi-octave noise with plenty of high-frequency energy (foliage, gravel, fabric)."""
    tex = np.zeros((h, w), np.float32)
    amp, cells = 1.0, base_cells
    for _ in range(octaves):
        tex += amp * (smooth_field(rng, h, w, cells)[..., 0] - 0.5)
        amp *= 0.7
        cells *= 2
    return tex / (np.abs(tex).max() + 1e-6)


def random_color(rng):
    return rng.integers(0, 256, 3).astype(np.float32)


def make_photo(seed, index, width, height):
    rng = np.random.default_rng([seed, index])
    h, w = height, width

    # 1. Background: linear gradient between two colours at a random angle ("sky to ground").
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    t = (t - t.min()) / (t.max() - t.min() + 1e-6)
    c0, c1 = random_color(rng), random_color(rng)
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]

    # 2. Low-frequency illumination / colour variation.
    img += (smooth_field(rng, h, w, rng.integers(3, 7), 3) - 0.5) * rng.uniform(40, 90)

    # 3. Several shapes, each blurred by its own amount and alpha-blended.
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    for _ in range(rng.integers(4, 10)):
        layer = Image.new("RGB", (w, h), tuple(int(v) for v in random_color(rng)))
        mask = Image.new("L", (w, h), 0)
        d = ImageDraw.Draw(mask)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.05, 0.35) * w, rng.uniform(0.05, 0.35) * h
        kind = rng.integers(0, 3)
        if kind == 0:
            d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
        elif kind == 1:
            d.rectangle([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
        else:
            n = int(rng.integers(3, 8))
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = rng.uniform(0.4, 1.0, n)
            pts = [(float(cx + rx * r * np.cos(a)), float(cy + ry * r * np.sin(a))) for a, r in zip(ang, rad)]
            d.polygon(pts, fill=255)
        # Mostly soft edges (out of focus), some nearly sharp (in focus).
        blur = rng.uniform(0.5, 2.0) if rng.random() < 0.4 else rng.uniform(3, 14)
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
        # Shading inside the shape so it is not a flat colour.
        shade = (smooth_field(rng, h, w, 4, 1) - 0.5) * rng.uniform(30, 80)
        layer = Image.fromarray(np.clip(np.asarray(layer, np.float32) + shade, 0, 255).astype(np.uint8), "RGB")
        pil = Image.composite(layer, pil, mask)

    # Optical softness: a light blur so shape edges look like a lens, not a rasteriser
    # (texture and sensor noise below are added after it, as in a camera).
    img = np.asarray(pil.filter(ImageFilter.GaussianBlur(0.7)), np.float32)

    # 4. Texture: a global fine texture plus a few strong textured regions (foliage, gravel).
    tex = fractal_texture(rng, h, w, octaves=5, base_cells=int(rng.integers(16, 40)))
    img += tex[..., None] * rng.uniform(10, 20)
    region = smooth_field(rng, h, w, 3)[..., 0]
    region = np.clip((region - rng.uniform(0.3, 0.55)) * 6, 0, 1)
    tex2 = fractal_texture(rng, h, w, octaves=3, base_cells=int(rng.integers(60, 110)))
    tint = rng.uniform(0.6, 1.4, 3).astype(np.float32)
    img += (region * tex2)[..., None] * tint * rng.uniform(35, 70)

    # 5. Mild sensor noise (luma-heavy, a little chroma).
    luma_noise = rng.normal(0, rng.uniform(2.0, 4.0), (h, w, 1)).astype(np.float32)
    chroma_noise = rng.normal(0, 1.0, (h, w, 3)).astype(np.float32)
    img += luma_noise + chroma_noise

    out = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), "RGB")
    progressive = bool(rng.random() < 0.10)
    return out, progressive


def parse_size(text):
    try:
        w, h = text.lower().split("x")
        w, h = int(w), int(h)
        assert w > 0 and h > 0
        return w, h
    except Exception:
        raise argparse.ArgumentTypeError("size must be WIDTHxHEIGHT, e.g. 500x375")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output directory (created if missing)")
    p.add_argument("--count", "-n", type=int, default=500, help="number of images (default 500)")
    p.add_argument("--size", type=parse_size, default=(500, 375), help="WIDTHxHEIGHT (default 500x375)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    os.makedirs(args.out, exist_ok=True)
    width, height = args.size
    t0 = time.perf_counter()
    sizes, n_prog = [], 0
    for i in range(args.count):
        img, progressive = make_photo(args.seed, i, width, height)
        path = os.path.join(args.out, f"{i:05d}.jpg")
        img.save(path, "JPEG", quality=args.quality, subsampling="4:2:0",
                 progressive=progressive, optimize=False)
        sizes.append(os.path.getsize(path))
        n_prog += progressive
    dt = time.perf_counter() - t0
    if not args.quiet and sizes:
        kb = np.array(sizes) / 1000.0
        q = np.percentile(kb, [0, 10, 50, 90, 100])
        print(f"wrote {args.count} JPEGs {width}x{height} q{args.quality} 4:2:0 to {args.out} "
              f"in {dt:.1f} s ({n_prog} progressive)")
        print(f"size kB: min {q[0]:.1f}  p10 {q[1]:.1f}  median {q[2]:.1f}  p90 {q[3]:.1f}  "
              f"max {q[4]:.1f}  mean {kb.mean():.1f}  total {kb.sum() / 1000:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
