#!/usr/bin/env python3
"""PyTorch/torchvision peer for `catlip bench pipeline --images DIR --size 224|64 --threads 1|2`.

Measures the same input pipeline CatLIP runs for pretraining, as PyTorch users run it:
a Dataset over the JPEGs in DIR, each opened with PIL and converted to RGB, then
    RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3/4, 4/3),
                      interpolation=BILINEAR, antialias=True)
    RandomHorizontalFlip()
    ToTensor()                       # no Normalize: CatLIP uses none
batched by DataLoader(batch_size=64, shuffle=True, num_workers=0|2,
persistent_workers=True when workers > 0). The main process runs
torch.set_num_threads(max(1, workers)) unless --threads is given, so
`--workers 0` pairs with `catlip bench pipeline --threads 1` and `--workers 2`
with `--threads 2`. (DataLoader worker processes use 1 torch thread each.)

For each configuration: one warm-up pass (which also starts the workers), then
--runs timed full passes over DIR; prints one JSON line:
    {"peer": "torchvision", "size": 224, "workers": 2, "threads": 2, "images": 500,
     "images_per_s_median": ..., "runs": [...], "torch": ..., "torchvision": ..., "pillow": ...}
"runs" are images/s of each timed pass.

Run by hand, not in CI (it needs PyTorch, which the Swift build does not):

    # once: a venv outside the repository
    python3 -m venv /opt/catlip-peers
    /opt/catlip-peers/bin/pip install torch==2.13.0+cpu torchvision==0.28.0 pillow numpy

    # images: 500 photo-like 500x375 JPEGs (q90, 4:2:0)
    /opt/catlip-peers/bin/python datasets/make_bench_photos.py --out /tmp/bench-photos

    /opt/catlip-peers/bin/python Benchmarks/peers/pipeline_torchvision.py \
        --images /tmp/bench-photos --size 224 64 --workers 0 2

`pip install torch==2.13.0+cpu` resolves to a CPU-only wheel; torchvision 0.28.0
from PyPI is a CUDA build whose `import torchvision` then fails with
"operator torchvision::nms does not exist". This script works around it by
defining the schemas of the two ops that build registers (torchvision::nms and
torchvision::qnms) with torch.library and importing again; the Python parts
used here (PIL transforms) do not need the compiled ops.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.library

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchvision_compat import import_torchvision  # noqa: E402

torchvision = import_torchvision()
from torchvision import transforms as T  # noqa: E402
from torchvision.transforms import InterpolationMode  # noqa: E402

import PIL  # noqa: E402
from PIL import Image  # noqa: E402

JPEG_EXTS = (".jpg", ".jpeg", ".JPG", ".JPEG")


class JPEGFolder(torch.utils.data.Dataset):
    def __init__(self, root, transform):
        self.paths = sorted(os.path.join(root, f) for f in os.listdir(root) if f.endswith(JPEG_EXTS))
        if not self.paths:
            raise SystemExit(f"no JPEGs in {root}")
        self.transform = transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as img:
            img = img.convert("RGB")
        return self.transform(img)


def make_transform(size):
    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                            interpolation=InterpolationMode.BILINEAR, antialias=True),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
    ])


def one_pass(loader):
    n = 0
    t0 = time.perf_counter()
    for batch in loader:
        n += batch.shape[0]
    return n, time.perf_counter() - t0


def bench(images, size, workers, threads, runs, batch_size, seed):
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    ds = JPEGFolder(images, make_transform(size))
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=True, num_workers=workers,
        persistent_workers=workers > 0,
    )
    one_pass(loader)  # warm-up (starts persistent workers, fills the page cache)
    rates = []
    for _ in range(runs):
        n, dt = one_pass(loader)
        assert n == len(ds), (n, len(ds))
        rates.append(n / dt)
    del loader  # shut persistent workers down before the next configuration
    return {
        "peer": "torchvision",
        "size": size,
        "workers": workers,
        "threads": threads,
        "batch_size": batch_size,
        "images": len(ds),
        "images_per_s_median": round(statistics.median(rates), 1),
        "runs": [round(r, 1) for r in rates],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description="torchvision peer for `catlip bench pipeline`")
    p.add_argument("--images", required=True, help="directory of JPEGs")
    p.add_argument("--size", type=int, nargs="+", default=[224], help="crop size(s), e.g. 224 64")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader num_workers value(s)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads in the main process (default: max(1, workers))")
    p.add_argument("--runs", "-R", type=int, default=3, help="timed passes after one warm-up (default 3)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for size in args.size:
        for workers in args.workers:
            threads = args.threads if args.threads is not None else max(1, workers)
            res = bench(args.images, size, workers, threads, args.runs, args.batch_size, args.seed)
            print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
