#!/usr/bin/env python3
"""NLTK peer for `catlip bench labels` and for catlip's `corenet` labelling mode.

It re-implements, with NLTK and ftfy, the rule by which Apple's corenet turns a caption into
CatLIP labels, pointed at Debian's WordNet 3.0 files (/usr/share/wordnet, package wordnet-base),
so that catlip's Swift labeller can be measured against it (speed and agreement).
No corenet code is copied; this describes and re-implements its behaviour.

corenet's rule (apple/corenet at commit 1aa3acd, files read)
============================================================
corenet/data/datasets/utils/text.py, ``caption_preprocessing(caption)``, in this order:
  1. ``urllib.parse.unquote(str(caption))``: %XX sequences decoded as UTF-8 (invalid bytes become
     U+FFFD). This runs FIRST, so an encoded plus ``%2B`` turns into "+" and then into a space in
     step 2, and ``%3Cb%3E`` becomes a tag that step 3 strips; ``%0A`` becomes a newline.
  2. ``.replace("+", " ")``: every plus becomes a space ("c++" -> "c  ").
  3. ``re.sub("<.*?>", "", ...)``: non-greedy HTML tag strip without DOTALL, so a "<" ... ">"
     pair on one line is removed together with everything between them (also "a < b > c" ->
     "a  c"); a tag broken by a newline is not removed. Entities (&amp;) are left to ftfy.
  4. ``.strip("\\n")``: only leading/trailing newlines.
  5. ``re.sub(" +", " ", ...)``: runs of ASCII spaces only (tabs, newlines stay).
  6. ``ftfy.fix_text(...)`` with ftfy's defaults (ftfy==6.2.0 in corenet's requirements.txt):
     mojibake repair, HTML entity unescape when the text has no "<" left ("&amp;" -> "&"),
     curly quotes to straight ones ("dog’s" -> "dog's"), latin ligatures and full-width
     characters to ASCII, control characters removed, line breaks normalised, NFC.
  7. ``.strip().lower()``: white space stripped, then Python's Unicode ``str.lower()``.
  So the text is lower-cased BEFORE tokenisation and lemmatisation (morphy is case-sensitive;
  all WordNet index lemmas are lower case).

corenet/data/datasets/classification/wordnet_tagged_classification.py,
``WordnetTaggedClassificationDataset._convert_caption_to_labels``:
  8. ``nltk.pos_tag(nltk.word_tokenize(text))``. The POS tags are computed and then IGNORED.
     ``word_tokenize`` (NLTK 3.8.1, pinned by projects/catlip/README-pretraining.md:
     ``pip install nltk==3.8.1``) is Punkt sentence splitting (the English punkt model)
     followed by ``NLTKWordTokenizer`` (the improved Treebank tokenizer) on each sentence:
     punctuation split off (, ; : ! ? ( ) " etc.), a period split off only at the end of a
     sentence (so "u.s.", "3.5", "e.g." survive inside a sentence), clitics split
     ("dog's" -> "dog" "'s", "can't" -> "ca" "n't"), hyphenated words kept whole ("t-shirt"),
     numbers kept as tokens ("3", "1920s", "3.5"), "$", "%", "&", "#", "@" split off.
  9. for each token (a new ``WordNetLemmatizer()`` per caption):
       word = WordNetLemmatizer().lemmatize(token)      # pos="n"
       synset = wn.synset(f"{word}.n.01")               # first noun sense of the lemma
       (any exception from these two lines -> token skipped)
       keep only if synset.name() == f"{word}.n.01"     # ``check_valid_noun_synset``
     - ``lemmatize`` is morphy for nouns: if the word is in noun.exc, the word and its
       exception bases are filtered to those that are noun lemmas (no detachment rules then);
       otherwise the word and the one-step detachments (s->"", ses->s, xes->x, zes->z,
       ches->ch, shes->sh, men->man, ies->y) that are noun lemmas, and if none, the rules are
       applied again and again until some form is a lemma. Of the candidates the SHORTEST is
       returned (``min(lemmas, key=len)``; ties: first found, the word itself first), so
       "glasses" -> "glass", "pants" -> "pant", "axes" -> "ax", "as" -> "a", "us" -> "u";
       a word with no candidate is returned unchanged. noun.exc also blocks: its line
       "is is" makes "is" stay "is" (not a noun lemma, so no label). "men" is itself a noun
       lemma (its first sense is work_force.n.01), so "men" -> "men" (tie on length, the word itself comes
       first) and then fails the head check: corenet never labels "men" (but "women" -> woman).
     - ``synset(name)`` lower-cases the name and splits it with ``rsplit(".", 2)``, so tokens
       with dots ("u.s.", "3.5") are looked up as they are; the lemma must be an index.noun
       entry (spaces never occur; underscores do: "hot_dog" typed with an underscore is a
       lemma; "hot dog" with a space is two tokens, so multi-word lemmas are never matched
       from normal text).
     - ``synset.name()`` is ``<first lemma of the synset, lower-cased>.n.<its sense number for
       that lemma>``: the check keeps the token only when the lemma is the HEAD (first) lemma of
       its own first noun sense. "dog" -> dog.n.01 kept (n02084071); "turtle" -> first sense
       is turtleneck.n.01 -> dropped; "a" -> ampere.n.02 -> dropped; "black" -> black.n.01 kept.
       Nothing checks that the token is a noun: "An image of black dog." -> image, black, dog.
       Numbers are tokens like any other: "3" -> three.n.01 (dropped), but "1850s", "9/11",
       "24/7", "b-52", "k2" are head lemmas of their first sense and are kept.
     - the synset key is ``f"{pos}{offset}"`` (``extract_pos_offset_info_from_synset``):
       "n" + the data.noun byte offset WITHOUT zero padding ("n5928118" is image.n.01).
 10. keys not in the vocabulary are dropped; the rest become indices with
     ``self.vocab.index(key)`` (duplicates stay in the list, but the one-hot target
     ``targets[labels] = 1`` collapses them).

This peer
=========
Steps 1-9 exactly (our own code for steps 1-7, NLTK's own objects for 8-9), with NLTK 3.8.1 and
ftfy 6.2.0 as corenet pins them, except:
  - No POS tagging (its output is unused; the tagger model is not available offline). corenet
    pays for it on every caption, so this peer is FASTER than corenet, an upper bound.
  - Tokenisation: ``nltk.word_tokenize`` needs the punkt English model, which cannot be
    downloaded here. Default (``--sentences punkt``): NLTK's own ``PunktSentenceTokenizer()``
    with empty (untrained) parameters, then ``NLTKWordTokenizer`` on each sentence. This
    reproduces word_tokenize on lower-cased text except after periods that the English model
    knows as abbreviations ("etc.", "fig.", "no.", "mr."...): the model keeps those inside the
    sentence (token "fig." -> no label), the untrained one splits ("fig" "." -> fig.n.01).
    With ``--sentences none`` the whole caption goes to ``NLTKWordTokenizer`` (what
    "NLTKWordTokenizer instead of word_tokenize" means literally): then only the caption's
    final period is split off and "title. keywords" keeps "title." whole (no label).
  - No vocabulary: every synset that passes the head-lemma check is written, as a ZERO-PADDED
    8-digit wnid (n05928118), in the order found, duplicates collapsed (first occurrence).
  - Input lines are read as UTF-8 (invalid bytes -> U+FFFD), split on "\\n" only (a trailing
    "\\r" is removed); nothing is truncated.

WordNet data for NLTK (created on first run)
============================================
NLTK's WordNet reader wants a folder ``corpora/wordnet`` under a path in ``nltk.data.path``
holding data.*, index.*, *.exc, ``index.sense`` (Debian package wordnet-sense-index) and a
``lexnames`` file (not packaged by Debian: the 45 standard lines "NN<TAB>lexname<TAB>syntactic
category", 00 adj.all ... 44 adj.ppl, written by this script). Recent NLTK refuses files
outside its data paths, symlinks included, so the files are COPIED from --wordnet-dir
(/usr/share/wordnet) into --nltk-data (default /opt/catlip-peers/nltk_data, i.e.
/opt/catlip-peers/nltk_data/corpora/wordnet, about 36 MB) when missing or of a different size.
Debian's wordnet-base ships Princeton's WordNet 3.0 database (data files re-issued 2021 with the
same offsets), the version NLTK's own "wordnet" corpus packages.

Output
======
--captions FILE --out OUT.jsonl: one JSON object per caption line, in input order:
    {"caption": "<the line as read>", "synsets": ["n05928118", "n04960277", "n02084071"]}
--bench: also (or only, without --out) prints one JSON line
    {"captions": N, "seconds": S, "captions_per_s": R, "wordnet_load_s": L, "peer": ..., ...}
    "seconds" covers labelling only (clean, tokenise, lemmatise, look up; not file I/O); the
    WordNet load (index and exception files, done once) is "wordnet_load_s". Synsets are read
    from data.noun lazily and cached by NLTK, as in corenet.
--caption TEXT (repeatable): label the given captions and print JSON lines (with tokens and
    lemmas when --verbose).

Run (by hand; not part of CI):
    apt-get install -y wordnet-base wordnet-sense-index
    python3 -m venv /opt/catlip-peers
    /opt/catlip-peers/bin/pip install nltk==3.8.1 ftfy==6.2.0
    /opt/catlip-peers/bin/python Benchmarks/peers/labels_nltk.py --caption "An image of black dog."
    /opt/catlip-peers/bin/python Benchmarks/peers/labels_nltk.py \\
        --captions /tmp/web100k.txt --out /tmp/peer_web100k.jsonl --bench
"""

import argparse
import json
import os
import re
import shutil
import sys
import time
import urllib.parse

DEFAULT_WORDNET_DIR = "/usr/share/wordnet"
DEFAULT_NLTK_DATA = "/opt/catlip-peers/nltk_data"

WORDNET_FILES = [
    "data.adj", "data.adv", "data.noun", "data.verb",
    "index.adj", "index.adv", "index.noun", "index.verb",
    "adj.exc", "adv.exc", "noun.exc", "verb.exc",
    "cntlist.rev", "index.sense",
]

# WordNet 3.0 lexicographer files: number, name, syntactic category (1 noun, 2 verb, 3 adj, 4 adv).
LEXNAMES = [
    ("adj.all", 3), ("adj.pert", 3), ("adv.all", 4), ("noun.Tops", 1), ("noun.act", 1),
    ("noun.animal", 1), ("noun.artifact", 1), ("noun.attribute", 1), ("noun.body", 1),
    ("noun.cognition", 1), ("noun.communication", 1), ("noun.event", 1), ("noun.feeling", 1),
    ("noun.food", 1), ("noun.group", 1), ("noun.location", 1), ("noun.motive", 1),
    ("noun.object", 1), ("noun.person", 1), ("noun.phenomenon", 1), ("noun.plant", 1),
    ("noun.possession", 1), ("noun.process", 1), ("noun.quantity", 1), ("noun.relation", 1),
    ("noun.shape", 1), ("noun.state", 1), ("noun.substance", 1), ("noun.time", 1),
    ("verb.body", 2), ("verb.change", 2), ("verb.cognition", 2), ("verb.communication", 2),
    ("verb.competition", 2), ("verb.consumption", 2), ("verb.contact", 2), ("verb.creation", 2),
    ("verb.emotion", 2), ("verb.motion", 2), ("verb.perception", 2), ("verb.possession", 2),
    ("verb.social", 2), ("verb.stative", 2), ("verb.weather", 2), ("adj.ppl", 3),
]


def lexnames_text():
    return "".join(f"{i:02d}\t{name}\t{cat}\n" for i, (name, cat) in enumerate(LEXNAMES))


def ensure_wordnet(nltk_data, wordnet_dir=DEFAULT_WORDNET_DIR):
    """Create NLTK_DATA/corpora/wordnet from Debian's WordNet files (copies, not symlinks)."""
    dest = os.path.join(nltk_data, "corpora", "wordnet")
    missing = [f for f in WORDNET_FILES if not os.path.isfile(os.path.join(wordnet_dir, f))]
    if missing:
        sys.exit(
            f"labels_nltk: {wordnet_dir} lacks {', '.join(missing)}; "
            "run: apt-get install -y wordnet-base wordnet-sense-index"
        )
    os.makedirs(dest, exist_ok=True)
    for f in WORDNET_FILES:
        src, dst = os.path.join(wordnet_dir, f), os.path.join(dest, f)
        if os.path.islink(dst) or not os.path.isfile(dst) or os.path.getsize(dst) != os.path.getsize(src):
            if os.path.lexists(dst):
                os.remove(dst)
            shutil.copyfile(src, dst)
    lex = os.path.join(dest, "lexnames")
    text = lexnames_text()
    if not os.path.isfile(lex) or open(lex).read() != text:
        with open(lex, "w") as fh:
            fh.write(text)
    return dest


def load_wordnet(nltk_data, wordnet_dir=DEFAULT_WORDNET_DIR):
    """Point NLTK at our copy and load WordNet (index + exception files). Returns (wn, seconds)."""
    ensure_wordnet(nltk_data, wordnet_dir)
    import nltk

    nltk.data.path.insert(0, nltk_data)
    t0 = time.perf_counter()
    from nltk.corpus import wordnet as wn

    wn.ensure_loaded()
    seconds = time.perf_counter() - t0
    root = str(getattr(wn, "root", ""))
    if os.path.realpath(root) != os.path.realpath(os.path.join(nltk_data, "corpora", "wordnet")):
        sys.exit(f"labels_nltk: NLTK loaded WordNet from {root}, not from {nltk_data}")
    return wn, seconds


# ---------------------------------------------------------------------------------------------
# corenet's caption clean-up (corenet/data/datasets/utils/text.py), re-implemented.
_HTML_RE = re.compile("<.*?>")
_SPACES_RE = re.compile(" +")


def caption_preprocessing(caption):
    import ftfy

    caption = urllib.parse.unquote(str(caption))
    caption = caption.replace("+", " ")
    caption = _HTML_RE.sub("", caption)
    caption = caption.strip("\n")
    caption = _SPACES_RE.sub(" ", caption)
    caption = ftfy.fix_text(caption)
    return caption.strip().lower()


class CorenetLabeller:
    """corenet's caption -> synsets rule (see the module docstring), without the vocabulary."""

    def __init__(self, wn, sentences="punkt"):
        from nltk.stem import WordNetLemmatizer
        from nltk.tokenize import NLTKWordTokenizer
        from nltk.tokenize.punkt import PunktSentenceTokenizer

        self.wn = wn
        self.WordNetLemmatizer = WordNetLemmatizer
        self.word_tokenizer = NLTKWordTokenizer()
        self.sentence_tokenizer = PunktSentenceTokenizer() if sentences == "punkt" else None

    def tokenize(self, text):
        """nltk.word_tokenize without the punkt model (see 'This peer' above)."""
        if self.sentence_tokenizer is None:
            sentences = [text]
        else:
            sentences = self.sentence_tokenizer.tokenize(text)
        return [tok for sent in sentences for tok in self.word_tokenizer.tokenize(sent)]

    def label(self, caption, trace=None):
        text = caption_preprocessing(caption)
        tokens = self.tokenize(text)
        lemmatizer = self.WordNetLemmatizer()  # corenet makes one per caption
        found, seen = [], set()
        for token in tokens:
            try:
                word = lemmatizer.lemmatize(token)
                synset = self.wn.synset(f"{word}.n.01")
            except Exception:
                if trace is not None:
                    trace.append([token, None, None])
                continue
            if synset.name() != f"{word}.n.01":
                if trace is not None:
                    trace.append([token, word, "head:" + synset.name()])
                continue
            wnid = f"n{synset.offset():08d}"
            if trace is not None:
                trace.append([token, word, wnid])
            if wnid not in seen:
                seen.add(wnid)
                found.append(wnid)
        return found


def read_captions(path):
    with open(path, "r", encoding="utf-8", errors="replace", newline="\n") as fh:
        for line in fh:
            if line.endswith("\n"):
                line = line[:-1]
            if line.endswith("\r"):
                line = line[:-1]
            yield line


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--captions", help="text file, one caption per line")
    ap.add_argument("--out", help="JSONL output ({caption, synsets} per line)")
    ap.add_argument("--bench", action="store_true", help="print one JSON line with timing")
    ap.add_argument("--caption", action="append", default=[], help="label this caption (repeatable)")
    ap.add_argument("--verbose", action="store_true", help="with --caption: show tokens and lemmas")
    ap.add_argument("--limit", type=int, default=0, help="only the first N captions")
    ap.add_argument("--sentences", choices=["punkt", "none"], default="punkt",
                    help="sentence splitting before NLTKWordTokenizer (default: untrained punkt)")
    ap.add_argument("--nltk-data", default=os.environ.get("CATLIP_NLTK_DATA", DEFAULT_NLTK_DATA))
    ap.add_argument("--wordnet-dir", default=DEFAULT_WORDNET_DIR)
    args = ap.parse_args(argv)
    if not args.captions and not args.caption:
        ap.error("give --captions FILE or --caption TEXT")
    if args.captions and not (args.out or args.bench):
        ap.error("--captions needs --out and/or --bench")

    wn, load_s = load_wordnet(args.nltk_data, args.wordnet_dir)
    labeller = CorenetLabeller(wn, args.sentences)

    for cap in args.caption:
        trace = [] if args.verbose else None
        rec = {"caption": cap, "synsets": labeller.label(cap, trace)}
        if args.verbose:
            rec["cleaned"] = caption_preprocessing(cap)
            rec["tokens"] = trace
        print(json.dumps(rec, ensure_ascii=False))
    if not args.captions:
        return

    captions = list(read_captions(args.captions))
    if args.limit:
        captions = captions[: args.limit]
    out = open(args.out, "w", encoding="utf-8") if args.out else None
    t0 = time.perf_counter()
    results = [labeller.label(c) for c in captions]
    seconds = time.perf_counter() - t0
    if out:
        for cap, syn in zip(captions, results):
            out.write(json.dumps({"caption": cap, "synsets": syn}, ensure_ascii=False) + "\n")
        out.close()
    if args.bench:
        import ftfy
        import nltk

        print(json.dumps({
            "peer": "nltk-corenet-rule",
            "captions": len(captions),
            "seconds": round(seconds, 3),
            "captions_per_s": round(len(captions) / seconds, 1) if seconds > 0 else None,
            "wordnet_load_s": round(load_s, 3),
            "labelled": sum(1 for r in results if r),
            "labels": sum(len(r) for r in results),
            "sentences": args.sentences,
            "nltk": nltk.__version__,
            "ftfy": ftfy.__version__,
            "python": sys.version.split()[0],
        }))


if __name__ == "__main__":
    main()
