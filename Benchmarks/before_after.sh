#!/usr/bin/env bash
# Two catlip binaries measured back to back, alternating, on the same machine: the check that a
# change which must not change speed (a refactor) did not. Per round and binary: `bench train`
# of the demo model (64 px, patch 8, dim 128, depth 4, 1,087 classes, batch 64, avg pooling),
# `bench infer` of config A (64 px, dim 192, depth 6, batch 64), and the daemon under 32
# closed-loop clients (`catlip serve` of a random ViT-Ti/16 at 224 px, `bench serve --clients 32`
# over the Unix socket). Prints one line per measurement and the medians of each binary.
#
#   Benchmarks/before_after.sh BEFORE_BINARY AFTER_BINARY ROUNDS IMAGE.jpg
set -euo pipefail
before=$1 after=$2 rounds=${3:-3} image=$4
work=$(mktemp -d /tmp/before-after.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
"$before" bench infer --image-size 224 --patch 16 --dim 192 --depth 12 --heads 3 --vocab 1000 --batch 1 --steps 1 \
  --save-model "$work/ti16" > /dev/null
results=$work/results.tsv
: > "$results"
measure() {  # NAME BINARY
  local name=$1 bin=$2 line
  line=$("$bin" bench train --image-size 64 --patch 8 --dim 128 --depth 4 --heads 4 --vocab 1087 --batch 64 \
    --steps 20 --threads 2 --no-class-token)
  echo -e "$name\ttrain\t$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["images_per_s"])' "$line")" | tee -a "$results"
  line=$("$bin" bench infer --image-size 64 --patch 8 --dim 192 --depth 6 --heads 3 --vocab 1000 --batch 64 --steps 20 --threads 2)
  echo -e "$name\tinfer\t$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["images_per_s"])' "$line")" | tee -a "$results"
  rm -f "$work/sock"
  "$bin" serve --model "$work/ti16" --socket "$work/sock" --threads 2 2> "$work/serve.log" &
  local pid=$!
  for _ in $(seq 100); do [ -S "$work/sock" ] && break; sleep 0.1; done
  line=$("$bin" bench serve --socket "$work/sock" --image "$image" --clients 32 --duration 10 --warmup 3 | head -n 1)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo -e "$name\tserve32\t$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["images_per_s"])' "$line")" | tee -a "$results"
}
for r in $(seq "$rounds"); do
  if (( r % 2 )); then measure before "$before"; measure after "$after"; else measure after "$after"; measure before "$before"; fi
done
python3 - "$results" <<'PY'
import sys, statistics, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, what, value = line.split("\t")
    rows[(what, name)].append(float(value))
for what in ("train", "infer", "serve32"):
    b, a = statistics.median(rows[(what, "before")]), statistics.median(rows[(what, "after")])
    print(f"{what}: before {b:.1f} images/s, after {a:.1f} images/s, after/before {a / b:.3f}")
PY
