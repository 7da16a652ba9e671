#!/usr/bin/env python3
"""Write mixup.safetensors: timm's Mixup (per-batch mode) on a fixed batch with fixed draws,
the reference of catlip's `Mixup.mixImages` / `mixTargets` (Tests/TrainingTests/MixupTests).

    /opt/catlip-peers/bin/python Tests/TrainingTests/Fixtures/make_mixup_fixture.py

timm's draws (numpy's Beta and the box centre) are replaced by fixed values through its own
hooks (`Mixup._params_per_batch`, `timm.data.mixup.rand_bbox`), so that what is compared is the
mixing itself: mixup with lambda 0.7, and cutmix with the box rows 1..<4, columns 0..<2 of a
5 x 5 image (lambda corrected to 1 - 6/25), both with label smoothing 0.1 over 6 classes.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "Benchmarks", "peers"))
from torchvision_compat import import_torchvision  # noqa: E402

import_torchvision()
import torch  # noqa: E402
import timm  # noqa: E402
import timm.data.mixup as tm  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

g = torch.Generator().manual_seed(5)
x = torch.rand(4, 3, 5, 5, generator=g)
labels = torch.tensor([0, 3, 5, 3])
out = {"x": x.clone(), "labels": labels.float()}

mixer = tm.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=6)
mixer._params_per_batch = lambda: (0.7, False)
xm, tm_ = mixer(x.clone(), labels.clone())
out.update({"mixup.x": xm, "mixup.targets": tm_})

mixer._params_per_batch = lambda: (0.5, True)
tm.rand_bbox = lambda img_shape, lam, margin=0., count=None: (1, 4, 0, 2)
xc, tc = mixer(x.clone(), labels.clone())
out.update({"cutmix.x": xc, "cutmix.targets": tc})

save_file({k: v.float().contiguous() for k, v in out.items()}, os.path.join(HERE, "mixup.safetensors"))
print("timm", timm.__version__, {k: tuple(v.shape) for k, v in out.items()})
