#!/usr/bin/env python3
"""Write posembed.safetensors: PyTorch references for resampling a ViT position embedding to
another patch grid, the way timm's resample_abs_pos_embed does it (Tests/ViTTests).

Regenerate by hand (the Swift build and CI do not need Python):

    /opt/catlip-peers/bin/python Tests/ViTTests/Fixtures/make_posembed_fixtures.py

timm keeps the prefix (class token) rows, reshapes the other rows to the (G, G) grid and calls
F.interpolate(size=(G', G'), mode=interpolation, antialias=antialias, align_corners=False);
timm's default is bicubic with antialias=True (a Pillow-style filter, a = -0.5, support scaled
when shrinking); without antialias PyTorch's bicubic uses a = -0.75 with clamped indices.

Cases (float64 math on float32 inputs, rounded to float32 once):
    pos (1, 1 + 4*4, 6) with a class token, grid 4 -> 7, 6, 3, 2 and 4;
    pos (1, 5*5, 3) without a prefix, grid 5 -> 8 and 3.
For each case and each (mode, antialias) in bicubic/True, bicubic/False, bilinear/True,
bilinear/False: "<case>.<mode>.<aa>.out" and, for a random "<case>.dout" of the output's shape,
"<case>.<mode>.<aa>.dpos" (the gradient with respect to the input embedding).
"""

import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))


def resample(pos, prefix, old, new, mode, antialias):
    pre, grid = pos[:, :prefix], pos[:, prefix:]
    d = pos.shape[-1]
    g = grid.reshape(1, old, old, d).permute(0, 3, 1, 2)
    g = F.interpolate(g, size=(new, new), mode=mode, antialias=antialias, align_corners=False)
    g = g.permute(0, 2, 3, 1).reshape(1, new * new, d)
    return torch.cat([pre, g], dim=1)


def main():
    gen = torch.Generator().manual_seed(4)
    out = {}
    cases = [("cls4", 1, 4, 6, [7, 6, 3, 2, 4]), ("flat5", 0, 5, 3, [8, 3])]
    for name, prefix, old, dim, news in cases:
        pos = torch.randn(1, prefix + old * old, dim, generator=gen)
        out[f"{name}.pos"] = pos
        for new in news:
            key = f"{name}.to{new}"
            dout = torch.randn(1, prefix + new * new, dim, generator=gen)
            out[f"{key}.dout"] = dout
            for mode in ("bicubic", "bilinear"):
                for aa in (True, False):
                    p = pos.double().requires_grad_(True)
                    y = resample(p, prefix, old, new, mode, aa)
                    y.backward(dout.double())
                    out[f"{key}.{mode}.{'aa' if aa else 'noaa'}.out"] = y.detach()
                    out[f"{key}.{mode}.{'aa' if aa else 'noaa'}.dpos"] = p.grad
    out = {k: v.detach().float().contiguous() for k, v in out.items()}
    path = os.path.join(HERE, "posembed.safetensors")
    save_file(out, path)
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(out)} tensors)")


if __name__ == "__main__":
    main()
