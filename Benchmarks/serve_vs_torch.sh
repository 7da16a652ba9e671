#!/bin/bash
# catlip serve against the PyTorch peer (Benchmarks/peers/serve_torch.py), back to back, for
# issue 9's benchmark. Run by hand from the repository root after `swift build -c release`:
#
#   Benchmarks/serve_vs_torch.sh WORK_DIR IMAGE.jpg IMAGE_SIZE PATCH DEPTH [DURATION]
#
# It writes a random model of that shape (dim 192, 3 heads, 1,000 classes) into WORK_DIR with
# `catlip bench infer --save-model` (which also prints the batched forward throughput at batch
# 32), then measures with `catlip bench serve` (closed loop, 1, 8 and 32 clients sending
# IMAGE.jpg): catlip serve over TCP and over its Unix socket, then the peer in its two modes
# (serial: one forward at a time; threads: FastAPI's thread pool) over TCP.
# Needs /opt/catlip-peers (torch, torchvision, timm, fastapi, uvicorn from pip) and curl.
set -eu
WORK=$1 IMG=$2 SIZE=$3 PATCH=$4 DEPTH=$5 D=${6:-10}
R=.build/release/catlip
PY=${PY:-/opt/catlip-peers/bin/python}
M=$WORK/model-$SIZE-$PATCH-$DEPTH
mkdir -p "$WORK"
echo "== model $SIZE px, patch $PATCH, depth $DEPTH; $(date -u +%FT%TZ); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bench-infer"; $R bench infer --image-size "$SIZE" --patch "$PATCH" --depth "$DEPTH" --batch 32 --steps 10 --save-model "$M" | tail -1
rm -f "$WORK/s.sock"
$R serve --model "$M" --socket "$WORK/s.sock" --listen 127.0.0.1:8781 2>"$WORK/serve.err" &
SP=$!
for _ in $(seq 1 60); do curl -s -o /dev/null http://127.0.0.1:8781/healthz && break; sleep 0.5; done
echo "catlip-tcp"; $R bench serve --url http://127.0.0.1:8781 --image "$IMG" --clients 1,8,32 --duration "$D" --warmup 3
echo "catlip-unix"; $R bench serve --socket "$WORK/s.sock" --image "$IMG" --clients 32 --duration "$D" --warmup 3
kill -TERM $SP; wait $SP || true
for mode in serial threads; do
  $PY Benchmarks/peers/serve_torch.py --model "$M" --port 8790 --threads 2 --mode $mode 2>"$WORK/peer.err" &
  PP=$!
  for _ in $(seq 1 120); do curl -s -o /dev/null http://127.0.0.1:8790/healthz && break; sleep 0.5; done
  echo "peer-$mode"; $R bench serve --url http://127.0.0.1:8790 --image "$IMG" --clients 1,8,32 --duration "$D" --warmup 3
  kill $PP; wait $PP 2>/dev/null || true
done
