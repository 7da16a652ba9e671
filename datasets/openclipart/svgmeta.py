#!/usr/bin/env python3
"""Build the OpenClipArt image-caption manifest (the project's real demo corpus, DATA.md).

Debian's openclipart-svg (/usr/share/openclipart/svg) carries the human-written metadata of each
drawing in RDF inside the SVG; openclipart-png (/usr/share/openclipart/png) carries the pixels:
png/<dirs>/<name>.png is the rendering of svg/<dirs>/<name>.svg. This script reads, from each
SVG's ``cc:Work`` element (so the creator's, publisher's and rights holder's ``cc:Agent`` titles
are NOT taken):
    dc:title                      the title
    dc:description                a free-text description (few files have one)
    dc:subject/rdf:Bag/rdf:li     keywords (a bare dc:subject text is taken as one keyword)
and writes a TSV manifest, one line per drawing:
    <path>\\t<caption>
where caption = "Title. description. kw1, kw2, ..." built from the non-empty parts, joined with
". " (no extra period after a part that already ends in . ! or ?), every run of white space
(newlines, tabs included) collapsed to one space, keywords de-duplicated (first spelling kept,
case-insensitive). With --folder-words the folder names below the category root are appended as
further keywords ("animals/mammals/x.svg" -> "animals, mammals").

Paths: when openclipart-png is installed (--png-root exists), one row per PNG, path = absolute
PNG path, caption from the matching SVG (empty when the SVG is missing or has no metadata).
Otherwise one row per SVG, path = the PNG path RELATIVE to the png root ("animals/x.png").
Rows are sorted by path (byte order of the UTF-8 path), so the output is deterministic.
Rows with an empty caption are kept (the labeller counts them as unlabelled) unless
--skip-empty. --captions-out also writes the captions alone, one per line, same order.

Parsing: xml.etree.ElementTree (expat: internal DTD entities such as Illustrator's &ns_svg; are
expanded); a file that does not parse is read with a regular expression over its cc:Work block.
Counts go to stderr as one JSON line.

    apt-get install -y openclipart-svg openclipart-png
    python3 datasets/openclipart_captions.py --out /tmp/openclipart.tsv \\
        --captions-out /tmp/openclipart_captions.txt

This module is also the metadata reader of datasets/openclipart/build.py (which builds the
train/validation manifests and shards); datasets/openclipart_captions.py is a thin wrapper that
runs main() below, kept so the command above still works.
"""

import argparse
import html
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

NS = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
}
CC_NAMESPACES = ("http://web.resource.org/cc/", "http://creativecommons.org/ns#")
DC = "{%s}" % NS["dc"]
RDF = "{%s}" % NS["rdf"]
WS_RE = re.compile(r"\s+")


def clean(text):
    return WS_RE.sub(" ", text or "").strip()


def _text(el):
    return clean("".join(el.itertext())) if el is not None else ""


def _works(root):
    for ns in CC_NAMESPACES:
        yield from root.iter("{%s}Work" % ns)


def parse_etree(path):
    root = ET.parse(path).getroot()
    title, desc, keywords, found = "", "", [], False
    for work in _works(root):
        found = True
        title = title or _text(work.find(DC + "title"))
        desc = desc or _text(work.find(DC + "description"))
        for subject in work.findall(DC + "subject"):
            lis = list(subject.iter(RDF + "li"))
            if lis:
                keywords += [_text(li) for li in lis]
            else:
                keywords.append(_text(subject))
    if not found:  # metadata without cc:Work: a dc:title not inside an Agent
        agents = {id(t) for a in root.iter() if a.tag.endswith("}Agent") for t in a.iter()}
        for t in root.iter(DC + "title"):
            if id(t) not in agents:
                title = _text(t)
                break
    return title, desc, keywords


_WORK_RE = re.compile(r"<(\w+:)?Work\b.*?</(\w+:)?Work>", re.S)
_AGENT_RE = re.compile(r"<(\w+:)?Agent\b.*?</(\w+:)?Agent>", re.S)
_TAG_RE = re.compile(r"<[^>]*>")


def _regex_field(block, name):
    m = re.search(r"<dc:%s\b[^>]*?(?:/>|>(.*?)</dc:%s>)" % (name, name), block, re.S)
    return m.group(1) or "" if m else ""


def _unxml(s):
    return clean(html.unescape(_TAG_RE.sub(" ", s)))


def parse_regex(path):
    with open(path, "rb") as fh:
        text = fh.read().decode("utf-8", errors="replace")
    m = _WORK_RE.search(text)
    block = _AGENT_RE.sub("", m.group(0) if m else text)
    title = _unxml(_regex_field(block, "title"))
    desc = _unxml(_regex_field(block, "description"))
    subj = _regex_field(block, "subject")
    lis = re.findall(r"<rdf:li\b[^>]*>(.*?)</rdf:li>", subj, re.S)
    keywords = [_unxml(x) for x in lis] if lis else ([_unxml(subj)] if subj.strip() else [])
    return title, desc, keywords


def make_caption(title, desc, keywords, extra_keywords=()):
    seen, kws = set(), []
    for k in list(keywords) + list(extra_keywords):
        k = clean(k)
        if k and k.lower() not in seen:
            seen.add(k.lower())
            kws.append(k)
    parts = [p for p in (clean(title), clean(desc), ", ".join(kws)) if p]
    out = ""
    for p in parts:
        if out:
            out += " " if out[-1] in ".!?" else ". "
        out += p
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="OpenClipArt PNG/caption manifest from SVG metadata")
    ap.add_argument("--svg-root", default="/usr/share/openclipart/svg")
    ap.add_argument("--png-root", default="/usr/share/openclipart/png")
    ap.add_argument("--out", required=True, help="TSV manifest path<TAB>caption")
    ap.add_argument("--captions-out", help="also write the captions alone, one per line")
    ap.add_argument("--folder-words", action="store_true", help="append folder names as keywords")
    ap.add_argument("--skip-empty", action="store_true", help="drop rows with an empty caption")
    args = ap.parse_args(argv)

    if not os.path.isdir(args.svg_root):
        sys.exit(f"openclipart_captions: {args.svg_root} not found; apt-get install -y openclipart-svg")
    have_png = os.path.isdir(args.png_root)

    svgs = {}
    for dirpath, _, files in os.walk(args.svg_root):
        for f in files:
            if f.lower().endswith(".svg"):
                full = os.path.join(dirpath, f)
                svgs[os.path.relpath(full, args.svg_root)[: -len(".svg")]] = full
    if have_png:
        keys = []
        for dirpath, _, files in os.walk(args.png_root):
            for f in files:
                if f.lower().endswith(".png"):
                    keys.append(os.path.relpath(os.path.join(dirpath, f), args.png_root)[: -len(".png")])
    else:
        keys = list(svgs)
    keys.sort(key=lambda k: k.encode("utf-8"))

    counts = {"png_installed": have_png, "svg_files": len(svgs), "png_files": len(keys) if have_png else 0,
              "rows": 0, "captions": 0, "empty": 0, "no_svg": 0, "xml_fallback": 0,
              "with_title": 0, "with_description": 0, "with_keywords": 0}
    rows = []
    for key in keys:
        svg = svgs.get(key)
        title, desc, kws = "", "", []
        if svg is None:
            counts["no_svg"] += 1
        else:
            try:
                title, desc, kws = parse_etree(svg)
            except (ET.ParseError, UnicodeDecodeError, ValueError):
                counts["xml_fallback"] += 1
                title, desc, kws = parse_regex(svg)
        kws = [k for k in (clean(k) for k in kws) if k]
        counts["with_title"] += bool(clean(title))
        counts["with_description"] += bool(clean(desc))
        counts["with_keywords"] += bool(kws)
        folders = os.path.dirname(key).split(os.sep) if args.folder_words else []
        caption = make_caption(title, desc, kws, [f for f in folders if f])
        if not caption:
            counts["empty"] += 1
            if args.skip_empty:
                continue
        else:
            counts["captions"] += 1
        path = os.path.join(args.png_root, key + ".png") if have_png else key + ".png"
        assert "\t" not in path and "\n" not in path and "\t" not in caption
        rows.append((path, caption))
    counts["rows"] = len(rows)

    with open(args.out, "w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(f"{p}\t{c}\n" for p, c in rows)
    if args.captions_out:
        with open(args.captions_out, "w", encoding="utf-8", newline="\n") as fh:
            fh.writelines(c + "\n" for _, c in rows)
    print(json.dumps(counts), file=sys.stderr)


if __name__ == "__main__":
    main()
