#!/usr/bin/env bash
# The browser check of `catlip serve --ui`: installs what is missing (Debian's chromium, a venv
# with Playwright for Python at /opt/catlip-ui-venv; never `playwright install`), builds an index
# with thumbnails of a folder of images, starts the daemon on loopback with --ui, waits for
# /healthz, runs check_ui.py (headless Chromium), stops the daemon and prints the screenshot path.
#
#   Tests/browser/run.sh [--model DIR] [--images DIR] [--word WORD] [--image FILE] [--port N]
#                        [--out DIR] [--fake]
#
# Builds nothing: the binary is $CATLIP, else .build/release/catlip. Defaults: --model
# runs/demo/model and --images data/objects/heldout (what `make demo` leaves), --word apple, the
# first PNG under IMAGES/apple (else under IMAGES) as --image, a free loopback port, --out a new
# temporary directory (index, socket, daemon log, screenshot). --fake runs the check against
# Tests/browser/fake_server.py instead of the daemon (no model, no binary needed).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"

MODEL=runs/demo/model
IMAGES=data/objects/heldout
WORD=apple
IMAGE=
PORT=
OUT=
FAKE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL="$2"; shift 2 ;;
    --images) IMAGES="$2"; shift 2 ;;
    --word) WORD="$2"; shift 2 ;;
    --image) IMAGE="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --fake) FAKE=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

VENV=/opt/catlip-ui-venv
if ! command -v chromium >/dev/null 2>&1; then
  echo "run.sh: installing chromium (apt-get)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! "$VENV/bin/python" -c 'import playwright' >/dev/null 2>&1; then
  echo "run.sh: creating $VENV with Playwright for Python (pip)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q playwright
fi
CHROMIUM_BIN="$(command -v chromium)"

OUT="${OUT:-$(mktemp -d /tmp/catlip-ui-check.XXXXXX)}"
mkdir -p "$OUT"
chmod 700 "$OUT"
SHOT="$OUT/ui.png"
if [ -z "$PORT" ]; then
  PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi
URL="http://127.0.0.1:$PORT"

PID=
stop() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  PID=
}
trap stop EXIT

if [ "$FAKE" = 1 ]; then
  [ -n "$IMAGE" ] || { IMAGE="$OUT/sample.png"; python3 Tests/browser/fake_server.py --write-sample "$IMAGE"; }
  [ "$WORD" != apple ] || WORD=car
  python3 Tests/browser/fake_server.py --port "$PORT" >"$OUT/server.log" 2>&1 &
  PID=$!
else
  CATLIP="${CATLIP:-$ROOT/.build/release/catlip}"
  [ -x "$CATLIP" ] || { echo "run.sh: no $CATLIP (swift build -c release --product catlip, or set CATLIP)" >&2; exit 2; }
  [ -d "$MODEL" ] || { echo "run.sh: no model directory $MODEL (make demo, or --model DIR)" >&2; exit 2; }
  [ -d "$IMAGES" ] || { echo "run.sh: no image folder $IMAGES (--images DIR)" >&2; exit 2; }
  if [ -z "$IMAGE" ]; then
    IMAGE="$(find "$IMAGES/$WORD" -maxdepth 1 -type f -name '*.png' 2>/dev/null | sort | head -n 1)"
    [ -n "$IMAGE" ] || IMAGE="$(find "$IMAGES" -type f -name '*.png' | sort | head -n 1)"
  fi
  [ -f "$IMAGE" ] || { echo "run.sh: no image to upload (--image FILE)" >&2; exit 2; }
  echo "run.sh: indexing $IMAGES with thumbnails" >&2
  "$CATLIP" index build --model "$MODEL" --out "$OUT/ui.index" --thumbnails "$IMAGES" >"$OUT/index.log" 2>&1 \
    || { cat "$OUT/index.log" >&2; exit 1; }
  "$CATLIP" serve --model "$MODEL" --index "$OUT/ui.index" --socket "$OUT/catlip.sock" \
    --listen "127.0.0.1:$PORT" --ui >"$OUT/server.log" 2>&1 &
  PID=$!
fi

for _ in $(seq 300); do
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "run.sh: the server exited before answering /healthz:" >&2
    cat "$OUT/server.log" >&2
    exit 1
  fi
  if curl -fsS -o /dev/null --max-time 2 "$URL/healthz" 2>/dev/null; then break; fi
  sleep 0.2
done
curl -fsS -o /dev/null --max-time 2 "$URL/healthz" || { echo "run.sh: no /healthz at $URL after 60 s" >&2; exit 1; }

set +e
"$VENV/bin/python" Tests/browser/check_ui.py --url "$URL" --image "$IMAGE" --word "$WORD" \
  --screenshot "$SHOT" --chromium "$CHROMIUM_BIN"
STATUS=$?
set -e
stop
echo "run.sh: screenshot $SHOT (server log $OUT/server.log)" >&2
[ "$STATUS" = 0 ] && echo "run.sh: UI check passed" >&2 || echo "run.sh: UI check FAILED" >&2
exit "$STATUS"
