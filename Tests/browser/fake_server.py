#!/usr/bin/env python3
"""A stand-in for `catlip serve --ui`, to develop the page and check_ui.py without the daemon.

It serves the page from the very strings of Sources/Serving/UIPage.swift (read again on every
request, so an edit shows on reload) with the Content-Security-Policy the daemon sends, and canned
answers for the API the page uses. It documents the contract the page was written against:

  GET  /, /ui/app.js, /ui/app.css   the page and its assets (+ Content-Security-Policy header)
  POST /v1/search   JSON {"text": "red car", "top_k": 20}
                    -> {"query": {"text": ..., "synsets": [{"wnid", "lemma", "rows": [...],
                        "how": "direct|hyponyms|hypernym"}]},
                        "results": [{"matches": [{"key", "row", "score", "thumbnail":
                        "/v1/thumbnails/ROW"}]}]}        ("thumbnail" absent without thumbnails)
                    words that map to nothing -> 400 {"error": {"code": "unmapped", ...}}
  POST /v1/search   image bytes as the body (Content-Type image/* or application/octet-stream)
                    -> {"results": [{"matches": [...]}]}           (no "query")
  POST /v1/classify image bytes -> {"results": [{"labels": [{"index", "wnid", "lemma", "score",
                    "logit"}]}]}         (a fine-tuned classifier: "class" instead of wnid/lemma)
  GET  /v1/synsets?q=PHRASE -> {"query": PHRASE, "synsets": [...]}  (empty list if unmapped)
  GET  /v1/thumbnails/ROW   -> image/png
  GET  /v1/model            -> {"model", "architecture", "embed_dim", "depth", "image_size",
                                "classes", "vocabulary", "precision", "index_rows", "thumbnails"}
  GET  /healthz, GET /metrics (Prometheus text, the daemon's metric names)
  errors: {"error": {"code": ..., "message": ...}} with 4xx/5xx

Usage: fake_server.py [--port 8765] [--no-thumbnails] [--write-sample FILE.png]
Python 3 standard library only. Listens on 127.0.0.1 only.
"""

import argparse
import hashlib
import json
import re
import struct
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[2]
UI_SWIFT = ROOT / "Sources" / "Serving" / "UIPage.swift"


def ui_assets():
    """{path: (content type, body)} and the CSP, parsed out of UIPage.swift."""
    source = UI_SWIFT.read_text(encoding="utf-8")
    strings = {}
    for name, body, indent in re.findall(
        r'static let (\w+) = ##"""\n(.*?)\n([ \t]*)"""##', source, flags=re.S
    ):
        lines = body.split("\n")
        for number, line in enumerate(lines):
            if line and not line.startswith(indent):  # Swift rejects it too
                raise SystemExit(f"UIPage.swift: {name} line {number + 1} is indented less than its closing delimiter")
        strings[name] = "\n".join(l[len(indent):] for l in lines)
    csp_source = re.search(r"static let contentSecurityPolicy =(.*?)\n\n", source, flags=re.S).group(1)
    csp = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', csp_source))
    return {
        "/": ("text/html; charset=utf-8", strings["html"]),
        "/ui/app.js": ("text/javascript; charset=utf-8", strings["script"]),
        "/ui/app.css": ("text/css; charset=utf-8", strings["stylesheet"]),
    }, csp


def png(width, height, pixel):
    """A truecolour PNG whose pixel (x, y) is pixel(x, y) -> (r, g, b)."""
    raw = b"".join(
        b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height)
    )

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


# Classes of the canned head: (head row, wnid, lemma, colour, shape).
CLASSES = [
    (436, "n02958343", "car", (200, 40, 40), "square"),
    (151, "n02084071", "dog", (150, 100, 50), "circle"),
    (281, "n02121808", "domestic_cat", (90, 90, 110), "circle"),
    (948, "n07739125", "apple", (60, 160, 60), "circle"),
    (849, "n04398044", "teapot", (40, 90, 170), "triangle"),
    (404, "n02690373", "airliner", (120, 160, 210), "triangle"),
]
# Words -> (class position, how it mapped).
WORDS = {
    "car": [(0, "direct")], "auto": [(0, "direct")], "automobile": [(0, "direct")],
    "dog": [(1, "hyponyms")], "puppy": [(1, "hypernym")], "cat": [(2, "hyponyms")],
    "apple": [(3, "direct")], "fruit": [(3, "hyponyms")], "teapot": [(4, "direct")],
    "plane": [(5, "direct")], "aircraft": [(5, "hyponyms")], "animal": [(1, "hyponyms"), (2, "hyponyms")],
}
# The index: (key, class position); one key tries to smuggle markup, one is long.
INDEX = []
for position, (_, _, lemma, _, _) in enumerate(CLASSES):
    for i in range(4):
        INDEX.append((f"objects/heldout/{lemma}/{lemma}_{i:03d}.png", position))
INDEX.append(('objects/heldout/odd/<img src=x onerror="alert(1)">.png', 0))
INDEX.append(("objects/heldout/odd/a_rather_long_file_name_that_has_to_wrap_somewhere_0001.png", 4))


def thumbnail(row):
    _, position = INDEX[row]
    colour, shape = CLASSES[position][3], CLASSES[position][4]
    n, shade = 64, 1.0 - 0.12 * (row % 4)
    c = tuple(int(v * shade) for v in colour)

    def pixel(x, y):
        u, v = x - n / 2 + 0.5, y - n / 2 + 0.5
        inside = {
            "square": abs(u) < 18 and abs(v) < 18,
            "circle": u * u + v * v < 20 * 20,
            "triangle": v < 18 and v > -20 and abs(u) < (v + 20) / 2,
        }[shape]
        return c if inside else (245, 245, 240)

    return png(n, n, pixel)


THUMBNAILS = {}


def thumbnail_png(row):
    if row not in THUMBNAILS:
        THUMBNAILS[row] = thumbnail(row)
    return THUMBNAILS[row]


def matches_for(scores, top_k, thumbnails):
    ranked = sorted(range(len(INDEX)), key=lambda r: (-scores[r], r))[:top_k]
    out = []
    for row in ranked:
        match = {"key": INDEX[row][0], "row": row, "score": round(scores[row], 4)}
        if thumbnails:
            match["thumbnail"] = f"/v1/thumbnails/{row}"
        out.append(match)
    return out


def synsets_for(text):
    found, seen = [], set()
    for word in re.findall(r"[a-z]+", text.lower()):
        for position, how in WORDS.get(word, []):
            if position in seen:
                continue
            seen.add(position)
            row, wnid, lemma, _, _ = CLASSES[position]
            found.append({"wnid": wnid, "lemma": lemma, "rows": [row], "how": how})
    return found


def class_of_image(body):
    """The class an uploaded image 'shows': a thumbnail's own class, else one from its hash."""
    for row in range(len(INDEX)):
        if body == thumbnail_png(row):
            return INDEX[row][1]
    return hashlib.sha256(body).digest()[0] % len(CLASSES)


class Metrics:
    BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = {}
        self.latency = {}
        self.batches = []
        self.decoded = 0

    def record(self, endpoint, status, seconds):
        with self.lock:
            self.requests[(endpoint, status)] = self.requests.get((endpoint, status), 0) + 1
            self.latency.setdefault(endpoint, []).append(seconds)

    def text(self):
        with self.lock:
            out = ["# HELP catlip_requests_total Requests answered, by endpoint and HTTP status",
                   "# TYPE catlip_requests_total counter"]
            for (endpoint, status), n in sorted(self.requests.items()):
                out.append(f'catlip_requests_total{{endpoint="{endpoint}",status="{status}"}} {n}')
            out += ["# HELP catlip_request_duration_seconds Time from the end of a request to its response",
                    "# TYPE catlip_request_duration_seconds histogram"]
            for endpoint, values in sorted(self.latency.items()):
                for le in self.BUCKETS:
                    n = sum(1 for v in values if v <= le)
                    out.append(f'catlip_request_duration_seconds_bucket{{endpoint="{endpoint}",le="{le}"}} {n}')
                out.append(f'catlip_request_duration_seconds_bucket{{endpoint="{endpoint}",le="+Inf"}} {len(values)}')
                out.append(f'catlip_request_duration_seconds_sum{{endpoint="{endpoint}"}} {sum(values)}')
                out.append(f'catlip_request_duration_seconds_count{{endpoint="{endpoint}"}} {len(values)}')
            out += ["# TYPE catlip_batch_size_images histogram"]
            for le in [1, 2, 4, 8, 16, 32, 64, 128, 256]:
                out.append(f'catlip_batch_size_images_bucket{{le="{le}"}} {sum(1 for b in self.batches if b <= le)}')
            out.append(f'catlip_batch_size_images_bucket{{le="+Inf"}} {len(self.batches)}')
            out.append(f"catlip_batch_size_images_sum {sum(self.batches)}")
            out.append(f"catlip_batch_size_images_count {len(self.batches)}")
            out += ["# TYPE catlip_batch_duration_seconds histogram",
                    f"catlip_batch_duration_seconds_sum {0.004 * len(self.batches)}",
                    f"catlip_batch_duration_seconds_count {len(self.batches)}",
                    "# TYPE catlip_queue_depth_images gauge", "catlip_queue_depth_images 0",
                    "# TYPE catlip_requests_in_flight gauge", "catlip_requests_in_flight 1",
                    "# TYPE catlip_connections_open gauge", "catlip_connections_open 2",
                    "# TYPE catlip_images_decoded_total counter", f"catlip_images_decoded_total {self.decoded}",
                    "# TYPE catlip_images_rejected_total counter", "catlip_images_rejected_total 0"]
            return "\n".join(out) + "\n"


class Handler(BaseHTTPRequestHandler):
    server_version = "catlip-fake/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("fake_server: " + fmt % args + "\n")

    def send(self, status, body, content_type, extra=None):
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.status = status

    def json(self, status, value):
        self.send(status, json.dumps(value), "application/json")

    def error(self, status, code, message):
        self.json(status, {"error": {"code": code, "message": message}})

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def handle_one(self, method):
        url = urlsplit(self.path)
        path, params = url.path, parse_qs(url.query)
        assets, csp = ui_assets()
        if path in assets:
            if method != "GET":
                return self.error(405, "method_not_allowed", f"{path} takes GET")
            content_type, text = assets[path]
            return self.send(200, text, content_type, {"Content-Security-Policy": csp,
                                                       "X-Content-Type-Options": "nosniff"})
        if path == "/healthz":
            return self.json(200, {"status": "ok"})
        if path == "/metrics":
            return self.send(200, self.server.metrics.text(), "text/plain; version=0.0.4")
        if path == "/v1/model":
            return self.json(200, {
                "model": "runs/demo/model", "architecture": "vit-ti16-fake", "embed_dim": 128,
                "depth": 4, "image_size": 64, "classes": 1087, "vocabulary": 1087,
                "precision": "fp32", "index_rows": len(INDEX), "thumbnails": self.server.thumbnails})
        m = re.fullmatch(r"/v1/thumbnails/(\d+)", path)
        if m:
            row = int(m.group(1))
            if not self.server.thumbnails or row >= len(INDEX):
                return self.error(404, "not_found", f"no thumbnail for row {row}")
            return self.send(200, thumbnail_png(row), "image/png", {"Cache-Control": "max-age=3600"})
        if path == "/v1/synsets":
            q = (params.get("q") or [""])[0]
            return self.json(200, {"query": q, "synsets": synsets_for(q)})
        if path in ("/v1/search", "/v1/classify"):
            if method != "POST":
                return self.error(405, "method_not_allowed", f"{path} takes POST")
            body = self.body()
            top_k = int((params.get("top_k") or ["5" if path == "/v1/classify" else "10"])[0])
            content_type = self.headers.get("Content-Type", "")
            time.sleep(0.05)  # something for the latency figures
            if content_type.startswith("application/json"):
                try:
                    request = json.loads(body)
                except ValueError:
                    return self.error(400, "bad_json", "The body is not valid JSON.")
                if path == "/v1/classify" or "text" not in request:
                    return self.error(400, "bad_request", "Only {\"text\": ...} is canned here.")
                text = str(request["text"])
                found = synsets_for(text)
                if not found:
                    return self.error(400, "unmapped", f"No WordNet synset of the head matches \"{text}\".")
                wanted = {CLASSES.index(next(c for c in CLASSES if c[1] == s["wnid"])) for s in found}
                scores = [(0.6 if INDEX[r][1] in wanted else 0.1) - 0.01 * r / len(INDEX) for r in range(len(INDEX))]
                k = int(request.get("top_k", top_k))
                return self.json(200, {"query": {"text": text, "synsets": found},
                                       "results": [{"matches": matches_for(scores, k, self.server.thumbnails)}]})
            if not body:
                return self.error(400, "empty_body", "The request has no image.")
            if not (body.startswith(b"\x89PNG") or body.startswith(b"\xff\xd8")):
                return self.error(400, "undecodable_image", "The body is not a PNG or JPEG image.")
            self.server.metrics.batches.append(1)
            self.server.metrics.decoded += 1
            position = class_of_image(body)
            if path == "/v1/classify":
                order = [position] + [p for p in range(len(CLASSES)) if p != position]
                labels = []
                for rank, p in enumerate(order[:top_k]):
                    row, wnid, lemma, _, _ = CLASSES[p]
                    score = [0.93, 0.41, 0.12, 0.05, 0.02, 0.01][rank]
                    labels.append({"index": row, "wnid": wnid, "lemma": lemma, "score": score,
                                   "logit": round(__import__("math").log(score / (1 - score)), 3)})
                return self.json(200, {"results": [{"labels": labels}]})
            scores = [(0.8 if INDEX[r][1] == position else 0.2) - 0.02 * r / len(INDEX) for r in range(len(INDEX))]
            return self.json(200, {"results": [{"matches": matches_for(scores, top_k, self.server.thumbnails)}]})
        return self.error(404, "not_found", f"No route {path}.")

    def dispatch(self, method):
        start = time.monotonic()
        self.status = 500
        try:
            self.handle_one(method)
        finally:
            path = urlsplit(self.path).path
            known = ["/v1/embed", "/v1/classify", "/v1/search", "/healthz", "/metrics"]
            self.server.metrics.record(path if path in known else "other", self.status, time.monotonic() - start)

    def do_GET(self):
        self.dispatch("GET")

    def do_HEAD(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--no-thumbnails", action="store_true", help="answer as an index built without thumbnails")
    parser.add_argument("--write-sample", metavar="FILE", help="write a sample PNG to upload, then exit")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    if args.write_sample:
        Path(args.write_sample).write_bytes(png(96, 96, lambda x, y: (40, 90, 170) if (x - 48) ** 2 + (y - 48) ** 2 < 900 else (250, 250, 250)))
        return
    ui_assets()  # fail now, not on the first request, if UIPage.swift cannot be parsed
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.metrics = Metrics()
    server.thumbnails = not args.no_thumbnails
    server.verbose = args.verbose
    print(f"fake catlip serve --ui on http://127.0.0.1:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
