#!/usr/bin/env bash
# The input-pipeline benchmark of BENCHMARKS.md: catlip and the torchvision peer back to back on
# the same 500 photo-like JPEGs, so that both see the same machine state. Run by hand, not in CI:
#
#   python3 -m venv /opt/catlip-peers
#   /opt/catlip-peers/bin/pip install torch==2.13.0+cpu torchvision==0.28.0 pillow numpy
#   bash Benchmarks/pipeline_vs_peer.sh [PEER_PYTHON] [ROUNDS]
#
# Prints one JSON line per measurement; each round runs every configuration of both once.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-/opt/catlip-peers/bin/python}
ROUNDS=${2:-2}
PHOTOS=.demo/bench-photos
[ -f "$PHOTOS/00499.jpg" ] || "$PY" datasets/make_bench_photos.py --count 500 --out "$PHOTOS" --quiet
swift build -c release --product catlip >/dev/null
for round in $(seq "$ROUNDS"); do
  for size in 224 64; do
    for threads in 1 2; do
      .build/release/catlip bench pipeline --images "$PHOTOS" --size "$size" --threads "$threads" --repeats 9
    done
    "$PY" Benchmarks/peers/pipeline_torchvision.py --images "$PHOTOS" --size "$size" --workers 0 2 --runs 9
  done
done
