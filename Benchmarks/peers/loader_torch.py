#!/usr/bin/env python3
"""PyTorch peer for `catlip bench loader --data 'DIR/{00000..0000N}.tar' --size 224|64 --threads 1|2`.

What PyTorch users run to train from img2dataset/webdataset tar shards, built on Python's
`tarfile` (not the `webdataset` package: no extra dependency, and every step is visible here;
the grouping follows webdataset's rules):
  * shards: brace patterns (`DIR/{00000..00009}.tar`, zero padding kept), `::`-separated lists;
  * each shard read as a stream (`tarfile.open(mode="r|")`), members grouped into samples by key
    as webdataset does (key = member path up to the first dot of its basename; a new sample
    starts when the key changes); the sample needs an image (jpg/jpeg/png/webp) and a txt;
  * a shuffle buffer of --shuffle-buffer samples (raw bytes, before decoding; 0 = off);
  * the image decoded with PIL and converted to RGB, then
        RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3/4, 4/3),
                          interpolation=BILINEAR, antialias=True)
        RandomHorizontalFlip()
        ToTensor()                     # no Normalize: CatLIP uses none
  * a multi-hot target over --classes (1000) classes: crc32 of each lower-cased caption word
    mod classes (labels are not the point, only the cost of building a target per sample);
  * DataLoader(batch_size=64, num_workers=0|2, persistent_workers when workers > 0), the work
    split across workers with torch.utils.data.get_worker_info(): by shard (worker w reads
    shards w, w+W, ...) when there are at least as many shards as workers, otherwise by sample
    (every worker streams every shard and decodes samples w, w+W, ...: reading a tar is cheap,
    decoding is the cost) so a single shard still keeps both workers busy. --split forces one.
The main process runs torch.set_num_threads(max(1, workers)) unless --threads is given, so
`--workers 0` pairs with `catlip bench loader --threads 1` and `--workers 2` with `--threads 2`
(the same convention as pipeline_torchvision.py).

For each configuration: one warm-up pass (starts the workers, fills the page cache), then --runs
timed passes; one JSON line per configuration:
    {"peer": "torch-tar-loader", "size": 224, "workers": 2, "threads": 2, "split": "sample",
     "shards": 1, "batch_size": 64, "images": 500, "images_per_s_median": ..., "runs": [...],
     "versions": {"python": ..., "torch": ..., "torchvision": ..., "pillow": ...}}
"runs" are the images/s of each timed pass; "images" is the count of one pass.

Run by hand, not in CI (it needs PyTorch; see pipeline_torchvision.py for the venv):

    python3 -m venv /opt/catlip-peers
    /opt/catlip-peers/bin/pip install torch==2.13.0+cpu torchvision==0.28.0 pillow numpy

    # 500 photo-like 500x375 JPEGs, then one shard of 500 samples (KEY.jpg, KEY.txt, KEY.json),
    # written by this script with tarfile (needs no torch; deterministic, mtime 0):
    /opt/catlip-peers/bin/python datasets/make_bench_photos.py --count 500 --out /tmp/bench-photos
    python3 Benchmarks/peers/loader_torch.py --write-shards-from /tmp/bench-photos \\
        --shards-out /tmp/bench-shards
    #   (or: catlip shards create --manifest M.tsv --out /tmp/bench-shards --per-shard 1000)

    /opt/catlip-peers/bin/python Benchmarks/peers/loader_torch.py \\
        --data '/tmp/bench-shards/{00000..00000}.tar' --size 224 64 --workers 0 2
    # the matching catlip runs:
    catlip bench loader --data '/tmp/bench-shards/{00000..00000}.tar' --size 224 --threads 1

--write-shards-from and --data can be given together: the shards are written first.
Shard layout written (the img2dataset layout catlip writes and reads): DIR/00000.tar,
DIR/00001.tar, ... with --per-shard samples each; KEY = 5-digit shard number + 4-digit index
("000000000"); members KEY.jpg (the file's bytes as they are), KEY.txt (a caption made of words
picked by a hash of the file name), KEY.json ({"key", "source", "caption"}), sorted by file name.
The CUDA-torchvision-next-to-CPU-torch import problem is worked around as in
pipeline_torchvision.py.
"""

import argparse
import hashlib
import io
import json
import os
import platform
import random
import re
import statistics
import sys
import tarfile
import time
import zlib

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
CAPTION_WORDS = (
    "dog cat bird tree house car street river mountain beach flower table chair window door "
    "bicycle boat train sky cloud sun person child garden field road bridge city lamp book cup "
    "plate fruit apple orange horse cow sheep forest lake snow rock wall fence roof grass").split()


# ---------------------------------------------------------------- shards (no torch needed)

def expand_braces(pattern):
    """`a{00..02}b` -> a00b a01b a02b (zero padding from the first bound); `{x,y}` lists too."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    head, tail, body = pattern[: m.start()], pattern[m.end():], m.group(1)
    r = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if r:
        lo, hi, width = int(r.group(1)), int(r.group(2)), len(r.group(1))
        step = 1 if hi >= lo else -1
        items = [str(i).zfill(width) for i in range(lo, hi + step, step)]
    else:
        items = body.split(",")
    return [x for item in items for x in expand_braces(head + item + tail)]


def shard_list(data):
    return [p for part in data.split("::") if part for p in expand_braces(part)]


def caption_for(name):
    h = hashlib.sha1(name.encode()).digest()
    words = [CAPTION_WORDS[b % len(CAPTION_WORDS)] for b in h[:3 + h[3] % 5]]
    return "a photo of a " + " and a ".join(dict.fromkeys(words))


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def write_shards(src_dir, out_dir, per_shard):
    files = sorted(f for f in os.listdir(src_dir) if f.rsplit(".", 1)[-1].lower() in IMAGE_EXTS)
    if not files:
        raise SystemExit(f"loader_torch: no images in {src_dir}")
    os.makedirs(out_dir, exist_ok=True)
    for f in os.listdir(out_dir):
        if re.fullmatch(r"\d{5}\.tar", f):
            os.remove(os.path.join(out_dir, f))
    shards = []
    for s in range(0, len(files), per_shard):
        number = s // per_shard
        path = os.path.join(out_dir, "%05d.tar" % number)
        with tarfile.open(path + ".tmp", "w", format=tarfile.PAX_FORMAT) as tar:
            for i, f in enumerate(files[s: s + per_shard]):
                key = "%05d%04d" % (number, i)
                src = os.path.abspath(os.path.join(src_dir, f))
                ext = f.rsplit(".", 1)[-1].lower()
                with open(src, "rb") as fh:
                    image = fh.read()
                caption = caption_for(f)
                _add(tar, f"{key}.{ext}", image)
                _add(tar, f"{key}.txt", caption.encode())
                _add(tar, f"{key}.json", json.dumps(
                    {"key": key, "source": src, "caption": caption}, sort_keys=True).encode())
        os.replace(path + ".tmp", path)
        shards.append(path)
    pattern = os.path.join(out_dir, "{%05d..%05d}.tar" % (0, len(shards) - 1))
    print(json.dumps({"wrote_shards": len(shards), "samples": len(files), "pattern": pattern}),
          file=sys.stderr, flush=True)
    return pattern


def split_key(name):
    """webdataset's rule: (key, extension) = (path up to the first dot of the basename, rest)."""
    slash = name.rfind("/") + 1
    dot = name.find(".", slash)
    if dot < 0:
        return name, ""
    return name[:dot], name[dot + 1:].lower()


def tar_samples(path):
    """Samples {"__key__": key, ext: bytes} of one tar, members grouped by consecutive key."""
    current = None
    with tarfile.open(path, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, ext = split_key(member.name)
            if current is not None and current["__key__"] != key:
                yield current
                current = None
            if current is None:
                current = {"__key__": key}
            current[ext] = tar.extractfile(member).read()
    if current is not None:
        yield current


# ---------------------------------------------------------------- torch part

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


try:
    import torch
except ImportError:  # --write-shards-from alone needs no torch
    torch = None
if torch is not None:
    from torchvision_compat import import_torchvision  # noqa: E402

    torchvision = import_torchvision()
    from torchvision import transforms as T  # noqa: E402
    from torchvision.transforms import InterpolationMode  # noqa: E402
    import PIL  # noqa: E402
    from PIL import Image  # noqa: E402


def make_transform(size):
    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                            interpolation=InterpolationMode.BILINEAR, antialias=True),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
    ])


def multi_hot(caption, classes):
    target = torch.zeros(classes)
    for word in caption.lower().split():
        target[zlib.crc32(word.encode()) % classes] = 1.0
    return target


class TarShards(torch.utils.data.IterableDataset if torch is not None else object):
    """Samples (image CHW float tensor, multi-hot target) from tar shards; see the docstring."""

    def __init__(self, shards, size, classes, split, shuffle_buffer, seed):
        super().__init__()
        self.shards, self.classes, self.split = list(shards), classes, split
        self.shuffle_buffer, self.seed = shuffle_buffer, seed
        self.transform = make_transform(size)
        self.epoch = 0

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        self.epoch += 1  # each worker process counts the epochs of its own copy
        rng = random.Random(self.seed * 1_000_003 + self.epoch * 1009 + wid)
        order = list(self.shards)
        random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)  # same in every worker
        by_shard = self.split == "shard" or (self.split == "auto" and len(order) >= nw)
        mine = order[wid::nw] if by_shard else order
        buffer = []
        n = 0
        for shard in mine:
            for sample in tar_samples(shard):
                if not by_shard:
                    n += 1
                    if (n - 1) % nw != wid:
                        continue
                if self.shuffle_buffer > 1:
                    buffer.append(sample)
                    if len(buffer) < self.shuffle_buffer:
                        continue
                    j = rng.randrange(len(buffer))
                    buffer[j], buffer[-1] = buffer[-1], buffer[j]
                    sample = buffer.pop()
                out = self.decode(sample)
                if out is not None:
                    yield out
        rng.shuffle(buffer)
        for sample in buffer:
            out = self.decode(sample)
            if out is not None:
                yield out

    def decode(self, sample):
        ext = next((e for e in IMAGE_EXTS if e in sample), None)
        if ext is None or "txt" not in sample:
            return None
        try:
            with Image.open(io.BytesIO(sample[ext])) as img:
                img = img.convert("RGB")
            caption = sample["txt"].decode("utf-8")
        except Exception:  # bad data is skipped, as catlip does
            return None
        return self.transform(img), multi_hot(caption, self.classes)


def one_pass(loader):
    n = 0
    t0 = time.perf_counter()
    for images, targets in loader:
        n += images.shape[0]
    return n, time.perf_counter() - t0


def bench(shards, size, workers, threads, runs, batch_size, classes, split, shuffle_buffer, seed):
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    ds = TarShards(shards, size, classes, split, shuffle_buffer, seed)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0)
    expected, _ = one_pass(loader)  # warm-up
    rates = []
    for _ in range(runs):
        n, dt = one_pass(loader)
        assert n == expected, (n, expected)
        rates.append(n / dt)
    del loader  # shut persistent workers down before the next configuration
    effective = split if split != "auto" else ("shard" if len(shards) >= max(1, workers) else "sample")
    return {
        "peer": "torch-tar-loader",
        "size": size,
        "workers": workers,
        "threads": threads,
        "split": effective if workers > 0 else "none",
        "shards": len(shards),
        "batch_size": batch_size,
        "shuffle_buffer": shuffle_buffer,
        "images": expected,
        "images_per_s_median": round(statistics.median(rates), 1),
        "runs": [round(r, 1) for r in rates],
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "pillow": PIL.__version__},
    }


def main(argv=None):
    p = argparse.ArgumentParser(description="torch DataLoader peer for `catlip bench loader`")
    p.add_argument("--data", help="shards: 'DIR/{00000..00009}.tar' or a '::'-separated list")
    p.add_argument("--size", type=int, nargs="+", default=[224], help="crop size(s), e.g. 224 64")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader num_workers value(s)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads in the main process (default: max(1, workers))")
    p.add_argument("--runs", "-R", type=int, default=3, help="timed passes after one warm-up (default 3)")
    p.add_argument("--batch-size", "--batch", type=int, default=64)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--split", choices=("auto", "shard", "sample"), default="auto",
                   help="how workers share the data (default: by shard when shards >= workers)")
    p.add_argument("--shuffle-buffer", type=int, default=1000, help="samples (0: no shuffle buffer)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write-shards-from", metavar="DIR",
                   help="first write shards from the images in DIR (sorted by name) to --shards-out")
    p.add_argument("--shards-out", default="/tmp/bench-shards", help="where --write-shards-from writes")
    p.add_argument("--per-shard", type=int, default=1000, help="samples per written shard")
    args = p.parse_args(argv)

    data = args.data
    if args.write_shards_from:
        write_shards(args.write_shards_from, args.shards_out, args.per_shard)
        if data is None:
            return 0
    if data is None:
        p.error("--data or --write-shards-from is required")
    shards = shard_list(data)
    missing = [s for s in shards if not os.path.isfile(s)]
    if missing:
        raise SystemExit(f"loader_torch: shard not found: {missing[0]}")
    if torch is None:
        raise SystemExit("loader_torch: PyTorch is not installed (see the docstring for the venv)")
    for size in args.size:
        for workers in args.workers:
            threads = args.threads if args.threads is not None else max(1, workers)
            res = bench(shards, size, workers, threads, args.runs, args.batch_size, args.classes,
                        args.split, args.shuffle_buffer, args.seed)
            print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
