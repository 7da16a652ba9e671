"""Fixtures for the crop-before-decode tests (RegionDecodeTests.swift).

Run by hand from the repository root, with Pillow and numpy (e.g. the venv of `make demo`):

    .venv/bin/python Tests/ImagingTests/Fixtures/make_region_fixtures.py

Writes Tests/ImagingTests/Fixtures/region/photo_o{1,3,5,6,8}.jpg: one smooth, photo-like
203x141 scene (odd sizes, so that iMCU edges and 1/8 reduction do not divide evenly), stored so
that after applying its EXIF orientation (1, 3, 5, 6 or 8) every file shows the same upright
image. Baseline 4:2:0 at quality 92, except photo_o5.jpg, which is progressive. Deterministic.
"""

import io
import pathlib

import numpy as np
from PIL import Image

OUT = pathlib.Path(__file__).resolve().parent / "region"
W, H = 203, 141


def scene() -> Image.Image:
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    img = np.zeros((H, W, 3))
    img[..., 0] = 40 + 180 * x / W
    img[..., 1] = 60 + 150 * y / H
    img[..., 2] = 120 + 80 * np.sin(x / 17.0) * np.cos(y / 23.0)
    for _ in range(6):  # soft discs
        cx, cy, r = rng.uniform(0, W), rng.uniform(0, H), rng.uniform(10, 40)
        colour = rng.uniform(0, 255, 3)
        d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        a = np.clip((r - d) / 4.0, 0, 1)[..., None]
        img = img * (1 - a) + colour * a
    img += rng.normal(0, 3, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


# Stored image = upright image transformed by the inverse of the orientation's display step.
STORE = {
    1: None,
    3: Image.Transpose.ROTATE_180,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # display rotates 90 clockwise, so store 90 counter-clockwise
    8: Image.Transpose.ROTATE_270,
}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    upright = scene()
    for orientation, method in STORE.items():
        stored = upright if method is None else upright.transpose(method)
        exif = Image.Exif()
        exif[0x0112] = orientation
        buf = io.BytesIO()
        stored.save(buf, "JPEG", quality=92, subsampling=2, progressive=(orientation == 5),
                    exif=exif.tobytes())
        (OUT / f"photo_o{orientation}.jpg").write_bytes(buf.getvalue())
        # Check: Pillow's exif_transpose gives back the upright scene (up to JPEG loss).
        from PIL import ImageOps
        back = ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue())))
        assert back.size == (W, H), (orientation, back.size)


if __name__ == "__main__":
    main()
