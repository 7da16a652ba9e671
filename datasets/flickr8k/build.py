#!/usr/bin/env python3
"""Build webdataset shards and a zero-shot ImageFolder from a Flickr8k download.

Flickr8k (Hodosh, Young and Hockenmaier, 2013: 8,091 Flickr photographs with five English
captions each) is for research use only. catlip does not redistribute it: you supply the
download you have (a folder of JPEGs plus one caption file) and this script turns it into
shards on your machine. Standard library only (python3 >= 3.8).

    python3 datasets/flickr8k/build.py --images Flickr8k_Dataset/Flicker8k_Dataset \\
        --captions Flickr8k_text/Flickr8k.token.txt --out data/flickr8k
    python3 datasets/flickr8k/build.py --images archive/Images \\
        --captions archive/captions.txt --out data/flickr8k           # Kaggle layout

Input
  --images DIR     the photos, named by their Flickr8k id (1000268201_693b08cb0e.jpg); only the
                   top level of DIR is read.
  --captions FILE  either the original Flickr8k.token.txt (lines `NAME.jpg#k<TAB>caption`,
                   k = 0..4; a space instead of the tab, as in some copies, is accepted)
                   or Kaggle's captions.txt (header `image,caption`, then lines
                   `NAME.jpg,caption`, split on the FIRST comma, so unquoted captions may
                   contain commas; a caption written as a quoted CSV field, "..." with ""
                   for a quote, is unquoted, and may even continue on the next lines). The
                   format is detected from the content, not the file name; a UTF-8 BOM and
                   CRLF line ends are fine.
  Captions are whitespace-normalised (runs of spaces, tabs, newlines -> one space), otherwise
  unchanged. Token-file captions are ordered by k, CSV captions keep the file order.

Problems are counted and reported, never fatal (the first few with FILE:LINE on stderr):
  bad caption lines: not in the detected format, empty caption, an image name that is not
  ID.jpg/.jpeg/.png with ID made of letters, digits, '_' and '-' (the original token file has
  captions for `2258277193_586949ec62.jpg.1`, which no image folder holds), undecodable UTF-8,
  a repeated NAME#k, an unterminated quoted field;
  skipped images (summary "skipped"): missing_image (captioned but not in DIR), unreadable_image,
  not_jpeg_or_png (checked by magic bytes, not by name: empty or other files),
  duplicate_key (a.jpg and a.png both captioned: the first name in the file is kept) and
  no_captions (a file in DIR that no caption line names; hidden files are ignored).

Output (--out DIR)
  DIR/train/00000.tar, 00001.tar, ...   webdataset shards, --per-shard samples each (1000),
  DIR/val/..., DIR/test/...             samples in sorted key order. One sample per image:
      KEY.jpg    the original bytes, unchanged (KEY.png if the file is a PNG)
      KEY.json   {"captions": [...], "image": original file name, "key": KEY, "split": ...}
      KEY.txt    all captions, one per line, in their original order (k = 0..4)
    KEY is the image id without extension. Tar members are ustar with mtime 0, uid/gid 0,
    empty owner names and mode 0644, JSON has sorted keys, so the same inputs give the same
    bytes. Each shard is written to NAME.tmp and renamed; shards left over from an earlier,
    larger run are removed.
  Split: sha256(KEY as UTF-8), first 8 bytes as a big-endian integer, mod 100: below
    100 - val - test -> train, below 100 - test -> val, else test (--val-percent 10,
    --test-percent 10). No official split is used: the split depends only on the key.
  DIR/heldout/CLASS/KEY.jpg   zero-shot ImageFolder (for `catlip eval`) built from the TEST
    split only. For each class in --zero-shot-classes (`name` or `name:word|word|...`, e.g.
    `bicycle:bicycle|bike`), a test image is put in class C when at least
    --zero-shot-min-captions (3) of its captions contain one of C's words (lower case, whole
    word, an optional plural 's'/'es'; irregular plurals are listed as words, `man:man|men`)
    and no other class reaches that count. Classes with fewer than --zero-shot-min-images (10)
    images are dropped (still reported). Files are hard links to the input images, copies when
    linking fails. The folder is rebuilt from scratch on every run (written beside it, then
    swapped in).
  DIR/probe-train/CLASS/KEY.jpg   the same rule and classes on the TRAIN split: the training
    images of a linear probe (`catlip eval linear-probe --train DIR/probe-train --val
    DIR/heldout`), whose test photos the model never saw.
  DIR/summary.json   counts per split with shard counts and brace patterns
    ("DIR/train/{00000..00006}.tar"), skipped counts by reason with examples, bad caption lines,
    captions-per-image histogram, byte-identical image files, zero-shot classes and counts.
    The same JSON is printed on stdout; progress goes to stderr.
"""

import argparse
import collections
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
import textwrap
import time

# Everyday nouns frequent in Flickr8k captions (people, animals, vehicles, scenes, sports), with
# simple plural/synonym groups. With the default 10% test split (798 images) 8 of them keep >= 10
# images (dog, man, girl, woman, boy, water, bicycle, beach); the rest are reported and dropped.
# "child" is left out on purpose: it overlaps boy and girl as a zero-shot label.
DEFAULT_CLASSES = (
    "man:man|men,woman:woman|women,boy,girl,baby,dog:dog|puppy,horse,bird,"
    "bicycle:bicycle|bike|biker|cyclist,car,motorcycle,boat:boat|canoe|kayak,"
    "water:water|ocean|lake|river|sea|pool,snow,beach:beach|sand|shore,grass,rock:rock|cliff,"
    "mountain:mountain|hill,street:street|road|sidewalk,skateboard:skateboard|skateboarder,"
    "football,basketball,soccer"
)
EXAMPLES = 5  # examples kept per problem kind in the summary / printed on stderr
MAX_CONTINUATION_LINES = 5  # a quoted CSV caption may continue on at most this many lines
NAME_RE = re.compile(r"^([A-Za-z0-9_-]{1,90})\.(jpe?g|png)$", re.IGNORECASE)  # ustar: short names
TOKEN_RE = re.compile(r"^([^\t#]+)#(\d+)[\t ]+(.*)$")
CSV_RECORD_RE = re.compile(r'^"?[A-Za-z0-9_.-]+\.(?:jpe?g|png)"?,', re.IGNORECASE)
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SPLITS = ("train", "val", "test")


# ----------------------------------------------------------------------------------- captions

class CaptionReader:
    """Parses a caption file into {image name: [captions]} and records bad lines."""

    def __init__(self, path):
        self.path = path
        self.bad = 0
        self.bad_examples = []
        self.bad_reasons = collections.Counter()
        self.format = None
        self.lines = 0
        self.undecodable = set()  # line numbers that are not UTF-8

    def problem(self, lineno, reason, text):
        self.bad += 1
        self.bad_reasons[reason] += 1
        if len(self.bad_examples) < EXAMPLES:
            shown = text if len(text) <= 120 else text[:117] + "..."
            message = f"{self.path}:{lineno}: {reason}: {shown!r}"
            self.bad_examples.append(message)
            print("bad caption line: " + message, file=sys.stderr)

    def read(self):
        with open(self.path, "rb") as f:
            raw = f.read()
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        lines = []
        for n, line in enumerate(raw.split(b"\n"), 1):
            if line.endswith(b"\r"):
                line = line[:-1]
            try:
                lines.append((n, line.decode("utf-8")))
            except UnicodeDecodeError:
                lines.append((n, line.decode("utf-8", "replace")))
                self.undecodable.add(n)
        if lines and lines[-1][1] == "":
            lines.pop()
        self.lines = len(lines)
        self.format = detect_format([t for n, t in lines if t and n not in self.undecodable])
        captions = collections.OrderedDict()
        if self.format == "token":
            self._read_token(lines, captions)
        else:
            self._read_csv(lines, captions)
        return captions

    def _check_name(self, n, name, text):
        name = name.strip()
        if not NAME_RE.match(name):
            self.problem(n, "invalid image name", text)
            return None
        return name

    def _read_token(self, lines, captions):
        indexed = {}  # name -> {k: caption}
        for n, text in lines:
            if n in self.undecodable:
                self.problem(n, "not UTF-8", text)
                continue
            if not text.strip():
                continue
            m = TOKEN_RE.match(text)
            if not m:
                self.problem(n, "expected NAME#k<TAB>caption", text)
                continue
            name = self._check_name(n, m.group(1), text)
            if name is None:
                continue
            caption = normalise(m.group(3))
            if not caption:
                self.problem(n, "empty caption", text)
                continue
            k = int(m.group(2))
            slot = indexed.setdefault(name, {})
            if k in slot:
                self.problem(n, f"repeated caption index #{k}", text)
                continue
            slot[k] = caption
        for name, slot in indexed.items():
            captions[name] = [slot[k] for k in sorted(slot)]

    def _read_csv(self, lines, captions):
        i = 0
        first = True
        while i < len(lines):
            n, text = lines[i]
            i += 1
            if n in self.undecodable:
                self.problem(n, "not UTF-8", text)
                continue
            if not text.strip():
                continue
            if first:
                first = False
                if text.strip().replace('"', "").replace(" ", "").lower() == "image,caption":
                    continue
            name, rest = split_first_field(text)
            if rest is None:
                self.problem(n, "expected NAME,caption", text)
                continue
            name = self._check_name(n, name, text)
            if name is None:
                continue
            caption = unquote_field(rest)
            joined = 0
            # A quoted caption without its closing quote may continue on the next lines (a CSV
            # field with a newline); join lines that do not start a new record.
            while caption is None and joined < MAX_CONTINUATION_LINES and i < len(lines):
                nn, more = lines[i]
                if nn in self.undecodable or CSV_RECORD_RE.match(more):
                    break
                rest = rest + "\n" + more
                i += 1
                joined += 1
                caption = unquote_field(rest)
            if caption is None:
                self.problem(n, "unterminated quoted caption", text)
                continue
            caption = normalise(caption)
            if not caption:
                self.problem(n, "empty caption", text)
                continue
            captions.setdefault(name, []).append(caption)


def detect_format(texts):
    """'token' or 'csv', by the first 50 non-empty lines."""
    token = csv = 0
    for text in texts[:50]:
        if TOKEN_RE.match(text):
            token += 1
        elif CSV_RECORD_RE.match(text) or text.strip().lower() == "image,caption":
            csv += 1
    return "token" if token > csv else "csv"


def split_first_field(text):
    """(first field, rest) split on the first comma; the first field may be a quoted one."""
    if text.startswith('"'):
        end = text.find('"', 1)
        if end < 0 or not text[end + 1:].startswith(","):
            return text, None
        return text[1:end], text[end + 2:]
    comma = text.find(",")
    if comma < 0:
        return text, None
    return text[:comma], text[comma + 1:]


def unquote_field(rest):
    """The caption text of everything after the first comma.

    Unquoted: taken as it is (commas and quotes included). A quoted CSV field ("...", "" for a
    quote, nothing but spaces after the closing quote): unquoted. Text that starts with a quote
    but continues after the closing quote (`"Hi" said he, ...`) is not a quoted field and is
    taken as it is. None when the quoted field is not closed."""
    s = rest.strip()
    if not s.startswith('"'):
        return rest
    out = []
    i = 1
    while i < len(s):
        c = s[i]
        if c == '"':
            if i + 1 < len(s) and s[i + 1] == '"':
                out.append('"')
                i += 2
                continue
            if s[i + 1:].strip() == "":
                return "".join(out)
            return rest  # not a well-formed quoted field: literal text
        out.append(c)
        i += 1
    return None


def normalise(caption):
    return " ".join(caption.split())


# ------------------------------------------------------------------------------------- shards

def split_of(key, val_percent, test_percent):
    bucket = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % 100
    if bucket < 100 - val_percent - test_percent:
        return "train"
    if bucket < 100 - test_percent:
        return "val"
    return "test"


def tar_member(name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info, io.BytesIO(data)


class ShardWriter:
    """Writes DIR/00000.tar, 00001.tar, ... with --per-shard samples each, atomically."""

    def __init__(self, folder, per_shard):
        self.folder = folder
        self.per_shard = per_shard
        self.shards = 0
        self.in_shard = 0
        self.samples = 0
        self.tar = None
        self.tmp = None
        os.makedirs(folder, exist_ok=True)

    def add(self, members):
        if self.tar is None:
            self.tmp = os.path.join(self.folder, f"{self.shards:05d}.tar.tmp")
            self.tar = tarfile.open(self.tmp, "w", format=tarfile.USTAR_FORMAT)
        for name, data in sorted(members):
            self.tar.addfile(*tar_member(name, data))
        self.in_shard += 1
        self.samples += 1
        if self.in_shard == self.per_shard:
            self._finish()

    def _finish(self):
        self.tar.close()
        os.replace(self.tmp, os.path.join(self.folder, f"{self.shards:05d}.tar"))
        self.tar = None
        self.shards += 1
        self.in_shard = 0

    def close(self):
        if self.tar is not None:
            self._finish()
        # Remove shards of an earlier, larger run and stray temporary files.
        for name in os.listdir(self.folder):
            m = re.match(r"^(\d{5})\.tar(\.tmp)?$", name)
            if m and (m.group(2) or int(m.group(1)) >= self.shards):
                os.remove(os.path.join(self.folder, name))

    def pattern(self, shown_folder):
        if self.shards == 0:
            return ""
        return os.path.join(shown_folder, "{00000..%05d}.tar" % (self.shards - 1))


# --------------------------------------------------------------------------------- zero-shot

def parse_classes(spec):
    classes = []
    seen = set()
    for part in spec.split(","):
        part = part.strip().lower()
        if not part:
            continue
        name, _, words = part.partition(":")
        name = name.strip()
        words = [w.strip() for w in (words.split("|") if words else [name]) if w.strip()]
        if not re.match(r"^[a-z0-9][a-z0-9_-]*$", name) or name in seen:
            raise SystemExit(f"--zero-shot-classes: bad or repeated class name {name!r}")
        seen.add(name)
        pattern = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")(?:s|es)?\b")
        classes.append((name, words, pattern))
    return classes


def class_hits(captions, classes, min_captions):
    """The classes named by at least min_captions of the captions (the image is used only
    when there is exactly one)."""
    lowered = [c.lower() for c in captions]
    return [name for name, _, pattern in classes
            if sum(1 for c in lowered if pattern.search(c)) >= min_captions]


def assign_classes(items, classes, min_captions, tally):
    """Class name -> [(key, path, ext)] of the items whose captions name exactly one class;
    counts the ambiguous and unnamed ones in `tally`."""
    assigned = collections.defaultdict(list)
    for key, path, ext, caps in items:
        hits = class_hits(caps, classes, min_captions)
        if len(hits) == 1:
            assigned[hits[0]].append((key, path, ext))
        elif hits:
            tally["ambiguous"] += 1
        else:
            tally["none"] += 1
    return assigned


def write_folder(final, assigned, names):
    """Writes the ImageFolder FINAL/CLASS/KEY.EXT for the classes `names` (hard links, copies
    when linking fails), built beside it and swapped in; returns the link/copy counts."""
    out = os.path.dirname(final)
    base = os.path.basename(final)
    building = os.path.join(out, f".{base}.tmp-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    os.makedirs(building)
    methods = collections.Counter()
    for name in names:
        folder = os.path.join(building, name)
        os.makedirs(folder)
        for key, path, ext in sorted(assigned.get(name, [])):
            methods[link_or_copy(path, os.path.join(folder, f"{key}.{ext}"))] += 1
    old = os.path.join(out, f".{base}.old-{os.getpid()}")
    if os.path.exists(final):
        os.replace(final, old)
    os.replace(building, final)
    shutil.rmtree(old, ignore_errors=True)
    return dict(methods)


def link_or_copy(src, dst):
    try:
        os.link(src, dst)
        return "link"
    except OSError:
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o644)
        return "copy"


# -------------------------------------------------------------------------------------- main

def list_images(folder):
    """{file name: path} of the regular files at the top level of folder."""
    files = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            files[entry.name] = entry.path
    return files


def main():
    ap = argparse.ArgumentParser(
        prog="build.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="default --zero-shot-classes:\n" + textwrap.fill(
            DEFAULT_CLASSES.replace(",", ", "), 92, initial_indent="  ", subsequent_indent="  "))
    ap.add_argument("--images", required=True, metavar="DIR", help="folder of the Flickr8k JPEGs")
    ap.add_argument("--captions", required=True, metavar="FILE",
                    help="Flickr8k.token.txt or Kaggle captions.txt (format detected by content)")
    ap.add_argument("--out", default="data/flickr8k", metavar="DIR",
                    help="output folder (default %(default)s)")
    ap.add_argument("--per-shard", type=int, default=1000, metavar="N",
                    help="samples per shard (default %(default)s)")
    ap.add_argument("--val-percent", type=int, default=10, metavar="P",
                    help="hash buckets (of 100) for validation (default %(default)s)")
    ap.add_argument("--test-percent", type=int, default=10, metavar="P",
                    help="hash buckets (of 100) for test (default %(default)s)")
    ap.add_argument("--zero-shot-classes", default=DEFAULT_CLASSES, metavar="LIST",
                    help="comma-separated `name` or `name:word|word` (default: the list "
                         "below); empty: no heldout folder")
    ap.add_argument("--zero-shot-min-captions", type=int, default=3, metavar="N",
                    help="captions of an image that must name the class (default %(default)s)")
    ap.add_argument("--zero-shot-min-images", type=int, default=10, metavar="N",
                    help="classes with fewer test images are dropped (default %(default)s)")
    ap.add_argument("--limit", type=int, default=0, metavar="N",
                    help="only the first N captioned images in key order (quick tests)")
    args = ap.parse_args()
    if args.per_shard < 1:
        ap.error("--per-shard must be at least 1")
    if not (0 <= args.val_percent and 0 <= args.test_percent and args.val_percent + args.test_percent <= 100):
        ap.error("--val-percent and --test-percent must be >= 0 and add up to at most 100")
    if not os.path.isdir(args.images):
        ap.error(f"--images {args.images}: not a folder")
    if not os.path.isfile(args.captions):
        ap.error(f"--captions {args.captions}: not a file")
    classes = parse_classes(args.zero_shot_classes)

    started = time.monotonic()
    reader = CaptionReader(args.captions)
    captions = reader.read()
    print(f"{args.captions}: {reader.format} format, {reader.lines} lines, "
          f"{sum(len(c) for c in captions.values())} captions of {len(captions)} images, "
          f"{reader.bad} bad lines", file=sys.stderr)

    files = list_images(args.images)
    by_lower = {}
    for name in files:
        by_lower.setdefault(name.lower(), []).append(name)

    skipped = collections.Counter()
    skipped_examples = collections.defaultdict(list)

    def skip(reason, what):
        skipped[reason] += 1
        if len(skipped_examples[reason]) < EXAMPLES:
            skipped_examples[reason].append(what)
            print(f"skipped ({reason}): {what}", file=sys.stderr)

    # Key -> caption names; two caption names with the same key (a.jpg and a.png) would collide.
    entries = []  # (key, caption name, file name or None)
    keys_seen = {}
    used_files = set()
    for name in captions:
        key = NAME_RE.match(name).group(1)
        if key in keys_seen:  # a.jpg and a.png: one key, two photos; keep the first
            skip("duplicate_key", f"{name} (key of {keys_seen[key]})")
            continue
        keys_seen[key] = name
        found = name if name in files else None
        if found is None and len(by_lower.get(name.lower(), [])) == 1:
            found = by_lower[name.lower()][0]
        entries.append((key, name, found))
        if found:
            used_files.add(found)
    for name in sorted(files):
        if name not in used_files:
            skip("no_captions", name)
    entries.sort()
    if args.limit:
        entries = entries[:args.limit]

    out = args.out
    os.makedirs(out, exist_ok=True)
    writers = {s: ShardWriter(os.path.join(out, s), args.per_shard) for s in SPLITS}
    counts = collections.Counter()
    captions_per_image = collections.Counter()
    digests = collections.defaultdict(list)
    test_items, train_items = [], []  # (key, path, ext, captions)
    for n, (key, name, found) in enumerate(entries, 1):
        if found is None:
            skip("missing_image", name)
            continue
        path = files[found]
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            skip("unreadable_image", f"{found}: {e.strerror or e}")
            continue
        if data.startswith(JPEG_MAGIC):
            ext = "jpg"
        elif data.startswith(PNG_MAGIC):
            ext = "png"
        else:
            skip("not_jpeg_or_png", f"{found}: {len(data)} bytes, starts {data[:8].hex()}")
            continue
        caps = captions[name]
        split = split_of(key, args.val_percent, args.test_percent)
        meta = {"key": key, "image": found, "captions": caps, "split": split}
        writers[split].add([
            (f"{key}.{ext}", data),
            (f"{key}.txt", ("\n".join(caps) + "\n").encode("utf-8")),
            (f"{key}.json", json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8")),
        ])
        counts[split] += 1
        captions_per_image[len(caps)] += 1
        digests[hashlib.sha256(data).hexdigest()].append(key)
        if split == "test":
            test_items.append((key, path, ext, caps))
        elif split == "train":
            train_items.append((key, path, ext, caps))
        if n % 1000 == 0:
            print(f"  {n}/{len(entries)} images", file=sys.stderr)
    for w in writers.values():
        w.close()

    # Zero-shot ImageFolder from the test split; the same rule on the train split gives the
    # linear probe's training folder (same classes, photos the model saw without their class).
    heldout = {"classes": {}, "kept": [], "dropped": [], "images": 0, "ambiguous": 0, "none": 0}
    probe = {"classes": {}, "images": 0, "ambiguous": 0, "none": 0}
    if classes:
        assigned = assign_classes(test_items, classes, args.zero_shot_min_captions, heldout)
        for name, words, _ in classes:
            items = assigned.get(name, [])
            heldout["classes"][name] = {"images": len(items), "words": words}
            if len(items) < args.zero_shot_min_images:
                heldout["dropped"].append(name)
                continue
            heldout["kept"].append(name)
            heldout["images"] += len(items)
        heldout["files"] = write_folder(os.path.join(out, "heldout"), assigned, heldout["kept"])
        heldout["folder"] = os.path.join(out, "heldout")
        heldout["rule"] = (f"test split; >= {args.zero_shot_min_captions} captions name the class "
                           f"(whole word, optional plural s/es), no other class does; classes with "
                           f"< {args.zero_shot_min_images} images dropped")
        trained = assign_classes(train_items, classes, args.zero_shot_min_captions, probe)
        for name in heldout["kept"]:
            probe["classes"][name] = len(trained.get(name, []))
            probe["images"] += len(trained.get(name, []))
        probe["files"] = write_folder(os.path.join(out, "probe-train"), trained, heldout["kept"])
        probe["folder"] = os.path.join(out, "probe-train")
        probe["rule"] = "train split, the heldout folder's rule and classes"
    else:
        for folder in ("heldout", "probe-train"):
            if os.path.isdir(os.path.join(out, folder)):
                shutil.rmtree(os.path.join(out, folder))  # no classes: no stale folders

    duplicates = [sorted(keys) for keys in digests.values() if len(keys) > 1]
    summary = {
        "dataset": "Flickr8k (research use only; supplied by the user, not redistributed by catlip)",
        "images_folder": args.images,
        "captions_file": args.captions,
        "captions_format": reader.format,
        "caption_lines": reader.lines,
        "bad_caption_lines": reader.bad,
        "bad_caption_reasons": dict(sorted(reader.bad_reasons.items())),
        "bad_caption_examples": reader.bad_examples,
        "captioned_images": len(captions),
        "image_files": len(files),
        "samples": sum(counts.values()),
        "captions_per_image": {str(k): v for k, v in sorted(captions_per_image.items())},
        "split_rule": (f"sha256(key)[:8] big-endian mod 100: < {100 - args.val_percent - args.test_percent} "
                       f"train, < {100 - args.test_percent} val, else test"),
        "splits": {s: {"samples": counts[s], "shards": writers[s].shards,
                       "pattern": writers[s].pattern(os.path.join(out, s))} for s in SPLITS},
        "per_shard": args.per_shard,
        "skipped": dict(sorted(skipped.items())),
        "skipped_total": sum(skipped.values()),
        "skipped_examples": {k: v for k, v in sorted(skipped_examples.items())},
        "identical_image_files": {"groups": len(duplicates), "examples": duplicates[:EXAMPLES]},
        "zero_shot": heldout,
        "probe_train": probe,
    }
    if args.limit:
        summary["limit"] = args.limit
    text = json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    tmp = os.path.join(out, "summary.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, os.path.join(out, "summary.json"))
    sys.stdout.write(text)
    print("splits: " + ", ".join(f"{s} {counts[s]}" for s in SPLITS)
          + f"; skipped {sum(skipped.values())}; zero-shot {heldout['images']} images in "
          f"{len(heldout['kept'])} classes; {time.monotonic() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except OSError as error:  # output folder not writable, disk full, caption file unreadable...
        print(f"build.py: error: {error}", file=sys.stderr)
        sys.exit(1)
