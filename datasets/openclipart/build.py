#!/usr/bin/env python3
"""Build the OpenClipArt image-caption corpus: manifests and shards for train and validation.

One command, standard library only (python3 >= 3.8):

    python3 datasets/openclipart/build.py                     # -> data/openclipart/
    python3 datasets/openclipart/build.py --limit 300 --no-shards --out /tmp/oca   # quick test

Steps:
 1. Installs the Debian packages openclipart-png and openclipart-svg with apt-get when their
    folders are missing (as root; otherwise through sudo; `apt-get update` and a second try when
    the first install fails). --no-install turns this off.
 2. Lists every PNG under --png-root (/usr/share/openclipart/png) and reads the RDF metadata of
    the SVG with the same relative path under --svg-root (datasets/openclipart/svgmeta.py: the
    cc:Work's dc:title, dc:description and dc:subject keywords). Text is cleaned further than
    svgmeta does: XML/HTML entities that survive XML parsing (the SVGs often carry
    double-encoded ones such as `&amp;quot;`) are decoded, UTF-8 read as Latin-1 ("LÃ©zard") is
    repaired when it round-trips, underscores in keywords become spaces ("signs_and_symbols"),
    and a description equal to the title is dropped. Caption = "Title. description. kw1, kw2".
 3. Duplicates: the Debian package replaces byte-identical PNGs with symlinks (1,221 of the
    8,121 PNG paths point to another file, often in another category). By default one sample is
    kept per distinct PNG file: the symlinks are skipped (reason "duplicate_png") and the file
    they point to keeps its own metadata. --keep-duplicates keeps them as separate samples.
 4. Split: sha1 of the canonical PNG path relative to --png-root (symlinks resolved, so a
    duplicate never lands on both sides), first 8 bytes as a big-endian integer, mod 100;
    below --val-percent (5) -> validation, else train. No randomness anywhere (--seed-free is
    accepted and changes nothing); the output depends only on the installed files.
 5. Writes, rows sorted by the byte order of the PNG path:
        OUT/train.tsv     /usr/share/openclipart/png/<rel>.png<TAB>caption
        OUT/val.jsonl     {"image": path, "caption": ..., "category": top-level folder,
                           "folder": folder relative to the PNG root}
    Image paths are absolute paths of the installed files: no image is copied into the repo.
 6. Shards, when a catlip binary is available (--catlip PATH; default .build/release/catlip of
    the repository when it exists; --no-shards to skip):
        catlip shards create --manifest OUT/train.tsv --out OUT/train --per-shard 1000
        catlip shards create --manifest OUT/val.jsonl --out OUT/val --per-shard 1000
    (old NNNNN.tar files in OUT/train and OUT/val are removed first), then `catlip shards info`.
 7. Prints one JSON summary on stdout: rows per split, empty captions, skipped files by reason
    with examples, text repairs, PNG sizes and colour types, categories, shard commands' results.
    Progress and apt-get output go to stderr. Exit status 1 when a step failed.

Samples are skipped (counted by reason, never fatal): duplicate_png (a symlink to another PNG),
broken_symlink, empty_png / not_png / truncated_png (header or IEND chunk missing),
unreadable_png, too_many_pixels (more than --max-pixels, default 89,478,485 = Pillow's
decompression-bomb threshold: the package has 15 drawings rendered at 10,000-21,000 px a side,
up to 20990x29700, 2.5 GB as RGBA), no_svg (no metadata), unreadable_svg, empty_caption (no title, description or
keyword); --keep-empty keeps no_svg/unreadable_svg/empty_caption rows with an empty caption.
SVGs without a PNG are counted as no_png.
"""

import argparse
import collections
import hashlib
import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from apt_install import apt_install  # noqa: E402
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import svgmeta  # noqa: E402  (datasets/openclipart/svgmeta.py)

PACKAGES = (("openclipart-png", "png_root"), ("openclipart-svg", "svg_root"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_COLOR_TYPES = {0: "grey", 2: "rgb", 3: "palette", 4: "grey+alpha", 6: "rgba"}
EXAMPLES = 5
PIL_MAX_IMAGE_PIXELS = 89_478_485  # PIL.Image.MAX_IMAGE_PIXELS: Pillow warns above, refuses above 2x

_ENTITY_RE = re.compile(r"&(#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")
_MOJIBAKE_RE = re.compile("[\u00c2-\u00f4][\u0080-\u00bf\u2018-\u203a\u20ac\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc]")


def log(msg):
    print(f"openclipart: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- packages

def _nonempty_dir(path):
    try:
        with os.scandir(path) as it:
            return any(True for _ in it)
    except OSError:
        return False


def ensure_packages(args, summary):
    """apt-get install the packages whose folder is missing. Returns False when that failed."""
    missing = [pkg for pkg, attr in PACKAGES if not _nonempty_dir(getattr(args, attr))]
    summary["packages"] = {"missing": missing, "installed": []}
    if not missing:
        return True
    if args.no_install:
        summary["packages"]["error"] = "missing and --no-install given"
        return False
    error = apt_install(missing, log)
    if error:
        summary["packages"]["error"] = error
        return False
    summary["packages"]["installed"] = missing
    still = [pkg for pkg, attr in PACKAGES if not _nonempty_dir(getattr(args, attr))]
    if still:
        summary["packages"]["error"] = "installed but folders still missing: " + " ".join(still)
        return False
    return True


# ---------------------------------------------------------------- text

def decode_entities(text, stats):
    """Entities left after XML parsing (double-encoded in the SVG): decode until stable."""
    for _ in range(3):
        if "&" not in text or not _ENTITY_RE.search(text):
            break
        text = html.unescape(text)
        stats["entities_decoded"] += 1
    return text


def fix_mojibake(text, stats):
    """UTF-8 that was read as Latin-1/cp1252 once ("LÃ©zard"): undo when it round-trips."""
    if not _MOJIBAKE_RE.search(text):
        return text
    for codec in ("latin-1", "cp1252"):
        try:
            fixed = text.encode(codec).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if fixed != text:
            stats["mojibake_fixed"] += 1
            return fixed
    return text


def fix_text(text, stats):
    return svgmeta.clean(fix_mojibake(decode_entities(text or "", stats), stats))


def build_caption(title, desc, keywords, stats, folder_words=()):
    title = fix_text(title, stats)
    desc = fix_text(desc, stats)
    if desc and desc.rstrip(".!? ").lower() == title.rstrip(".!? ").lower():
        desc = ""
        stats["description_same_as_title"] += 1
    kws = []
    for k in keywords:
        k = fix_text(k, stats)
        if "_" in k:
            k = svgmeta.clean(k.replace("_", " "))
            stats["keyword_underscores"] += 1
        if k:
            kws.append(k)
    stats["with_title"] += bool(title)
    stats["with_description"] += bool(desc)
    stats["with_keywords"] += bool(kws)
    return svgmeta.make_caption(title, desc, kws, folder_words)


def read_svg(path, stats):
    """(title, description, keywords) or raises OSError when the file cannot be read."""
    try:
        return svgmeta.parse_etree(path)
    except (ET.ParseError, UnicodeDecodeError, ValueError):
        stats["xml_fallback"] += 1
        return svgmeta.parse_regex(path)


# ---------------------------------------------------------------- PNG

def png_check(path):
    """((width, height, colour type), None) or (None, reason) from the header and the IEND chunk."""
    try:
        size = os.path.getsize(path)
        if size == 0:
            return None, "empty_png"
        with open(path, "rb") as fh:
            head = fh.read(33)
            if len(head) < 33 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
                return None, "not_png"
            width, height = struct.unpack(">II", head[16:24])
            fh.seek(max(0, size - 12))
            tail = fh.read(12)
    except OSError:
        return None, "unreadable_png"
    if len(tail) < 12 or tail[4:8] != b"IEND":
        return None, "truncated_png"
    return (width, height, head[25]), None


# ---------------------------------------------------------------- listing and split

def list_files(root, ext):
    """Relative paths (without the extension) of the files ending in ext, and which are symlinks."""
    out = {}
    for dirpath, dirnames, files in os.walk(root):
        dirnames.sort()
        for f in files:
            if f.lower().endswith(ext):
                full = os.path.join(dirpath, f)
                out[os.path.relpath(full, root)[: -len(ext)]] = full
    return out


def is_validation(rel_png, val_percent):
    digest = hashlib.sha1(rel_png.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100 < val_percent


def byte_key(s):
    return s.encode("utf-8", "surrogateescape")


# ---------------------------------------------------------------- output

def write_atomic(path, lines):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(lines)
    os.replace(tmp, path)


def run_catlip(catlip, manifest, out_dir, per_shard, summary):
    os.makedirs(out_dir, exist_ok=True)
    stale = sorted(f for f in os.listdir(out_dir) if re.fullmatch(r"\d{5}\.tar", f))
    for f in stale:
        os.remove(os.path.join(out_dir, f))
    cmd = [catlip, "shards", "create", "--manifest", manifest, "--out", out_dir,
           "--per-shard", str(per_shard)]
    log("$ " + " ".join(cmd))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    result = {"command": " ".join(cmd), "exit": proc.returncode,
              "seconds": round(time.perf_counter() - t0, 2), "removed_old_shards": len(stale)}
    if proc.stderr.strip():
        sys.stderr.write(proc.stderr)
    result["output"] = _json_or_text(proc.stdout)
    if proc.returncode != 0:
        result["error"] = proc.stderr.strip()[-2000:] or "exit status %d" % proc.returncode
        summary.append(result)
        return False
    shards = sorted(f for f in os.listdir(out_dir) if re.fullmatch(r"\d{5}\.tar", f))
    result["shards"] = len(shards)
    result["bytes"] = sum(os.path.getsize(os.path.join(out_dir, f)) for f in shards)
    if shards:
        pattern = (os.path.join(out_dir, shards[0]) if len(shards) == 1 else
                   os.path.join(out_dir, "{%s..%s}.tar" % (shards[0][:5], shards[-1][:5])))
        result["pattern"] = pattern
        info = subprocess.run([catlip, "shards", "info", pattern], capture_output=True, text=True)
        result["info"] = _json_or_text(info.stdout)
        if info.returncode != 0:
            result["info_error"] = info.stderr.strip()[-2000:] or "exit status %d" % info.returncode
    summary.append(result)
    return True


def _json_or_text(text):
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        lines = [json.loads(l) for l in text.splitlines() if l.startswith("{") and _is_json(l)]
        return lines if lines and len(lines) == len(text.splitlines()) else text[-4000:]


def _is_json(line):
    try:
        json.loads(line)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(
        description="OpenClipArt train/validation manifests and shards (see the module docstring)")
    ap.add_argument("--out", default=os.path.join(REPO, "data", "openclipart"),
                    help="output folder (default: data/openclipart in the repository, git-ignored)")
    ap.add_argument("--png-root", default="/usr/share/openclipart/png")
    ap.add_argument("--svg-root", default="/usr/share/openclipart/svg")
    ap.add_argument("--catlip", default=None,
                    help="catlip binary for `shards create` (default: .build/release/catlip of the "
                         "repository when it exists; 'none' to skip)")
    ap.add_argument("--no-shards", action="store_true", help="write the manifests only")
    ap.add_argument("--per-shard", type=int, default=1000, help="samples per shard (default 1000)")
    ap.add_argument("--val-percent", type=int, default=5, help="hash buckets (of 100) for validation")
    ap.add_argument("--limit", type=int, default=None, help="only the first N PNGs (sorted by path)")
    ap.add_argument("--keep-duplicates", action="store_true",
                    help="keep PNG symlinks (byte-identical duplicates) as their own samples")
    ap.add_argument("--keep-empty", action="store_true",
                    help="keep drawings without metadata (empty caption) instead of skipping them")
    ap.add_argument("--folder-words", action="store_true",
                    help="append the folder names as keywords (leaks the category into the text)")
    ap.add_argument("--max-pixels", type=int, default=PIL_MAX_IMAGE_PIXELS,
                    help="skip PNGs with more pixels (default %d, Pillow's decompression-bomb "
                         "warning threshold; 0: no limit)" % PIL_MAX_IMAGE_PIXELS)
    ap.add_argument("--no-install", action="store_true", help="never run apt-get")
    ap.add_argument("--seed-free", action="store_true",
                    help="accepted for clarity; the build never uses randomness")
    args = ap.parse_args(argv)
    if args.per_shard <= 0 or not 0 <= args.val_percent <= 100 or (args.limit is not None and args.limit < 0):
        ap.error("--per-shard must be positive, --val-percent in 0...100, --limit >= 0")

    t0 = time.perf_counter()
    out = os.path.abspath(args.out)
    summary = collections.OrderedDict()
    summary["out"] = out
    summary["png_root"] = args.png_root
    summary["svg_root"] = args.svg_root
    ok = ensure_packages(args, summary)
    if not ok:
        print(json.dumps(summary, ensure_ascii=False))
        return 1

    png_root_real = os.path.realpath(args.png_root)
    pngs = list_files(args.png_root, ".png")
    svgs = list_files(args.svg_root, ".svg")
    png_links = {k for k, p in pngs.items() if os.path.islink(p)}
    summary["png_paths"] = len(pngs)
    summary["png_symlinks"] = len(png_links)
    summary["svg_paths"] = len(svgs)
    summary["svg_symlinks"] = sum(os.path.islink(p) for p in svgs.values())

    skipped = collections.Counter()
    examples = collections.defaultdict(list)

    def skip(reason, rel):
        skipped[reason] += 1
        if len(examples[reason]) < EXAMPLES:
            examples[reason].append(rel)

    for key in sorted(set(svgs) - set(pngs), key=byte_key):
        skip("no_png", key + ".svg")

    # Candidates: (relative key of this path, canonical relative PNG path used for the split).
    candidates = []
    for key in sorted(pngs, key=byte_key):
        rel_png = key + ".png"
        canonical = rel_png
        if key in png_links:
            real = os.path.realpath(pngs[key])
            if not os.path.exists(real):
                skip("broken_symlink", rel_png)
                continue
            inside = os.path.relpath(real, png_root_real)
            if not inside.startswith(".." + os.sep):
                canonical = inside
                if not args.keep_duplicates and inside[: -len(".png")] in pngs:
                    skip("duplicate_png", rel_png)
                    continue
        candidates.append((key, canonical))
    if args.limit is not None:
        summary["limit"] = args.limit
        candidates = candidates[: args.limit]

    stats = collections.Counter()
    colour = collections.Counter()
    widths, heights = [], []
    categories = {"train": collections.Counter(), "validation": collections.Counter()}
    captions = collections.Counter()
    train, val = [], []
    for key, canonical in candidates:
        rel_png = key + ".png"
        path = os.path.join(args.png_root, rel_png)
        info, reason = png_check(pngs[key])
        if reason:
            skip(reason, rel_png)
            continue
        if args.max_pixels and info[0] * info[1] > args.max_pixels:
            skip("too_many_pixels", rel_png)
            continue
        svg = svgs.get(key)
        caption = ""
        if svg is None:
            reason = "no_svg"
        else:
            try:
                title, desc, kws = read_svg(svg, stats)
            except OSError:
                reason = "unreadable_svg"
            else:
                folders = [f for f in os.path.dirname(key).split(os.sep) if f] if args.folder_words else []
                caption = build_caption(title, desc, kws, stats, folders)
                if not caption:
                    reason = "empty_caption"
        if reason:
            stats["captions_empty"] += 1
            if not args.keep_empty:
                skip(reason, rel_png)
                continue
        if "\t" in path or "\n" in path or "\r" in path:
            skip("tab_or_newline_in_path", rel_png)
            continue
        caption = caption.replace("\t", " ")  # clean() already collapsed white space
        width, height, ctype = info
        colour[PNG_COLOR_TYPES.get(ctype, str(ctype))] += 1
        widths.append(width)
        heights.append(height)
        folder = os.path.dirname(key)
        category = folder.split(os.sep)[0] if folder else ""
        captions[caption] += 1
        if is_validation(canonical, args.val_percent):
            categories["validation"][category] += 1
            val.append(json.dumps({"image": path, "caption": caption, "category": category,
                                   "folder": folder}, ensure_ascii=False) + "\n")
        else:
            categories["train"][category] += 1
            train.append(f"{path}\t{caption}\n")

    os.makedirs(out, exist_ok=True)
    train_manifest = os.path.join(out, "train.tsv")
    val_manifest = os.path.join(out, "val.jsonl")
    write_atomic(train_manifest, train)
    write_atomic(val_manifest, val)

    summary["rows"] = {"train": len(train), "validation": len(val), "total": len(train) + len(val)}
    summary["manifests"] = {"train": train_manifest, "validation": val_manifest}
    summary["captions_empty"] = stats.pop("captions_empty", 0)
    summary["empty_captions_kept"] = args.keep_empty
    summary["skipped"] = dict(sorted(skipped.items()))
    summary["skipped_examples"] = {k: examples[k] for k in sorted(examples)}
    summary["text"] = {k: stats[k] for k in (
        "with_title", "with_description", "with_keywords", "xml_fallback", "entities_decoded",
        "mojibake_fixed", "keyword_underscores", "description_same_as_title")}
    summary["distinct_captions"] = len(captions)
    summary["most_repeated_captions"] = [[c, n] for c, n in captions.most_common(5) if n > 1]
    if widths:
        def q(xs, f):
            xs = sorted(xs)
            return xs[min(len(xs) - 1, int(f * len(xs)))]
        summary["png"] = {
            "colour_types": dict(sorted(colour.items())),
            "width": {"min": min(widths), "median": q(widths, 0.5), "max": max(widths)},
            "height": {"min": min(heights), "median": q(heights, 0.5), "max": max(heights)},
        }
    summary["categories"] = {s: dict(sorted(c.items())) for s, c in categories.items()}

    catlip = args.catlip
    if catlip is None:
        default = os.path.join(REPO, ".build", "release", "catlip")
        catlip = default if os.access(default, os.X_OK) else None
    elif catlip.lower() in ("", "none"):
        catlip = None
    summary["shards"] = []
    if args.no_shards or catlip is None:
        summary["shards"] = None
        log("manifests only (no catlip binary or --no-shards)")
    else:
        for manifest, sub, rows in ((train_manifest, "train", train), (val_manifest, "val", val)):
            if not rows:
                continue
            if not run_catlip(catlip, manifest, os.path.join(out, sub), args.per_shard, summary["shards"]):
                ok = False
                break
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(summary, ensure_ascii=False))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
