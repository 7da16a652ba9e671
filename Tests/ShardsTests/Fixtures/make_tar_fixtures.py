"""Tar fixtures for ShardsTests/TarTests.swift, written by Python's own tarfile module, so that
the tests prove the Swift reader returns exactly what the ecosystem writes.

Regenerate (by hand; the outputs are committed, the tests never run this; standard library
only, written with Python 3.11):

    python3 Tests/ShardsTests/Fixtures/make_tar_fixtures.py

Output goes to tar/ next to this script (about 70 KB). Deterministic: fixed contents, fixed
mtimes, fixed order; rerunning gives identical bytes.

  pax.tar     PAX_FORMAT: a global header (`g`), names over 100 bytes (a pax `path` record),
              non-ASCII names, a pax record for a uid too large for ustar and a fractional mtime,
              an empty member, binary data, a directory (skipped).
  gnu.tar     GNU_FORMAT: a long name (`L` header), a symlink with a long target (`K` header,
              skipped), a uid in GNU base-256, a plain member.
  ustar.tar   USTAR_FORMAT: a directory, a symlink, a hard link and a FIFO (all skipped), a name
              of 101-255 bytes split over the prefix and name fields.
  wds.tar     a webdataset-style shard as webdataset's TarWriter writes it (tarfile's default
              PAX format, float mtimes, so every member has its own pax header): 3 samples, each
              KEY.jpg, KEY.txt, KEY.json.
  expected.json   for each tar, the regular files a reader must return, in order: name and
              contents (hex); for wds.tar also the samples (key and files by extension).
"""

import hashlib
import io
import json
import os
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "tar")


def blob(seed, size):
    """Deterministic pseudo-random bytes."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return out[:size]


def info(name, size=0, kind=tarfile.REGTYPE, mtime=1_700_000_000, uid=1000, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.type = kind
    ti.mtime = mtime
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    ti.uid = uid
    ti.gid = 1000
    ti.uname = "catlip"
    ti.gname = "catlip"
    ti.linkname = linkname
    return ti


def write(name, fmt, entries, pax_headers=None):
    """entries: (TarInfo, bytes or None). Returns the regular files in order."""
    path = os.path.join(OUT, name)
    with tarfile.open(path, "w", format=fmt, pax_headers=pax_headers or {}) as tf:
        for ti, data in entries:
            if data is not None:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                tf.addfile(ti)
    members = []
    for ti, data in entries:
        if data is not None:
            members.append({"name": ti.name, "hex": data.hex()})
    # Read back with tarfile itself: what we claim it wrote is what it reads.
    with tarfile.open(path) as tf:
        got = [(m.name, tf.extractfile(m).read().hex()) for m in tf.getmembers() if m.isreg()]
    assert got == [(m["name"], m["hex"]) for m in members], (name, got)
    return members


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = {}

    long_dir = "a-directory-with-a-rather-long-name/and-another-level-below-it/"
    pax_entries = [
        (info("short.txt"), b"hello, tar\n"),
        (info(long_dir + "x" * 60 + ".bin"), blob("pax-long", 1000)),
        (info("very/" * 50 + "deep.jpg"), blob("pax-deep", 700)),
        (info("café/naïve-日本語.txt"), "crème brûlée — 日本語のキャプション\n".encode()),
        (info("big-uid.dat", uid=8**8 + 5), blob("pax-uid", 513)),
        (info("fraction.dat", mtime=1_700_000_000.25), blob("pax-mtime", 512)),
        (info("empty.dat"), b""),
        (info("subdir", kind=tarfile.DIRTYPE), None),
        (info("subdir/" + "é" * 60 + ".txt"), "é".encode() * 3),
    ]
    expected["pax.tar"] = write(
        "pax.tar", tarfile.PAX_FORMAT, pax_entries, pax_headers={"comment": "catlip fixture"})

    gnu_entries = [
        (info("gnu/" + "long-name-" * 15 + "end.bin"), blob("gnu-long", 3000)),
        (info("gnu/link", kind=tarfile.SYMTYPE, linkname="target/" * 30 + "file"), None),
        (info("gnu/big-uid.dat", uid=8**8 + 5), blob("gnu-uid", 100)),
        (info("gnu/plain.txt"), b"plain\n"),
    ]
    expected["gnu.tar"] = write("gnu.tar", tarfile.GNU_FORMAT, gnu_entries)

    prefix_name = "photos/" + "p" * 120 + "/inside-prefix.jpg"
    ustar_entries = [
        (info("photos", kind=tarfile.DIRTYPE), None),
        (info("photos/a.jpg"), blob("ustar-a", 2048)),
        (info("photos/link.jpg", kind=tarfile.SYMTYPE, linkname="a.jpg"), None),
        (info("photos/hard.jpg", kind=tarfile.LNKTYPE, linkname="photos/a.jpg"), None),
        (info("photos/fifo", kind=tarfile.FIFOTYPE), None),
        (info(prefix_name), blob("ustar-prefix", 77)),
        (info("photos/b.txt"), b"a caption\n"),
    ]
    expected["ustar.tar"] = write("ustar.tar", tarfile.USTAR_FORMAT, ustar_entries)

    wds_entries = []
    samples = []
    captions = ["a red bicycle leaning on a wall", "two cats on a sofa", "crème brûlée on a plate"]
    for i, caption in enumerate(captions):
        key = f"{i:09d}"
        jpg = b"\xff\xd8\xff\xe0" + blob(f"wds-{i}", 300 + 97 * i) + b"\xff\xd9"
        txt = caption.encode()
        meta = json.dumps({"key": key, "caption": caption, "width": 64, "height": 48}).encode()
        files = {"jpg": jpg, "txt": txt, "json": meta}
        for ext, data in files.items():
            wds_entries.append((info(f"{key}.{ext}", mtime=1_700_000_000.5 + i), data))
        samples.append({"key": key, "files": {ext: data.hex() for ext, data in files.items()}})
    expected["wds.tar"] = write("wds.tar", tarfile.PAX_FORMAT, wds_entries)
    expected["wds.samples"] = samples

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=True)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, to {OUT}")


if __name__ == "__main__":
    main()
