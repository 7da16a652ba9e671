#!/usr/bin/env python3
"""Lay out a Flickr8k download from two git mirrors (for machines that only have git mirrors).

Flickr8k is for research use only and catlip does not redistribute it. A user normally has the
standard download (a folder of 8,091 JPEGs plus Flickr8k.token.txt or Kaggle's captions.txt) and
runs datasets/flickr8k/build.py on it directly. This helper only reproduces that layout from two
public GitHub repositories already mirrored as bare git directories:

  --images-git DIR   git directory of RlNZLER/Image-Text-Matching; the images are not at HEAD
                     any more but in history: tree 163f7e02c668d1214f89e9a378e74a1e625ac267
                     (= data/images at commit d6335246), 8,091 JPEGs named by the Flickr8k ids.
                     Note: these copies are all 224x224, squashed to square (aspect ratio lost).
  --captions-git DIR git directory of quantumnaan/sic_translator; HEAD:data/ignore_captions.txt
                     is Kaggle's captions.txt (header `image,caption`, 40,455 caption lines).

Writes OUT/Images/NAME.jpg (blob bytes unchanged; existing files with the right size are kept)
and OUT/captions.txt. Standard library only; needs the `git` command.

    python3 datasets/flickr8k/extract_from_git.py \\
        --images-git /work/.mirror/RlNZLER+Image-Text-Matching/repo \\
        --captions-git /work/.mirror/quantumnaan+sic_translator/repo \\
        --out data/flickr8k-src
"""

import argparse
import os
import subprocess
import sys

IMAGES_TREE = "163f7e02c668d1214f89e9a378e74a1e625ac267"
CAPTIONS_PATH = "HEAD:data/ignore_captions.txt"


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images-git", required=True, help="bare git dir of RlNZLER/Image-Text-Matching")
    ap.add_argument("--captions-git", required=True, help="bare git dir of quantumnaan/sic_translator")
    ap.add_argument("--tree", default=IMAGES_TREE, help="tree holding the JPEGs (default %(default)s)")
    ap.add_argument("--out", default="data/flickr8k-src", help="output folder (default %(default)s)")
    args = ap.parse_args()

    images = os.path.join(args.out, "Images")
    os.makedirs(images, exist_ok=True)

    captions = subprocess.run(["git", "--git-dir", args.captions_git, "show", CAPTIONS_PATH],
                              check=True, capture_output=True).stdout
    write_atomic(os.path.join(args.out, "captions.txt"), captions)
    print(f"captions.txt: {len(captions)} bytes, {captions.count(10)} lines", file=sys.stderr)

    listing = subprocess.run(["git", "--git-dir", args.images_git, "ls-tree", "-z", "-l", args.tree],
                             check=True, capture_output=True).stdout
    wanted = []  # (sha, name, size)
    for entry in listing.split(b"\0"):
        if not entry:
            continue
        meta, name = entry.split(b"\t", 1)
        _mode, kind, sha, size = meta.split()
        name = name.decode("utf-8")
        if kind != b"blob" or "/" in name or name.startswith("."):
            continue
        target = os.path.join(images, name)
        if os.path.isfile(target) and os.path.getsize(target) == int(size):
            continue
        wanted.append((sha.decode(), name))
    print(f"tree {args.tree}: {len(wanted)} image(s) to extract", file=sys.stderr)

    written = 0
    if wanted:
        proc = subprocess.Popen(["git", "--git-dir", args.images_git, "cat-file", "--batch"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        # One request at a time (write a sha, read its answer): no pipe can fill up.
        for sha, name in wanted:
            proc.stdin.write(sha.encode() + b"\n")
            proc.stdin.flush()
            header = proc.stdout.readline().split()
            if len(header) != 3 or header[1] != b"blob":
                print(f"skip {name}: {header!r}", file=sys.stderr)
                continue
            data = proc.stdout.read(int(header[2]))
            proc.stdout.read(1)  # trailing newline
            write_atomic(os.path.join(images, name), data)
            written += 1
        proc.stdin.close()
        proc.wait()
    total = sum(1 for n in os.listdir(images) if not n.endswith(".tmp"))
    print(f"wrote {written} image(s); {images} now holds {total} file(s)", file=sys.stderr)


if __name__ == "__main__":
    main()
