#!/bin/bash
# catlip serve against the PyTorch peer (Benchmarks/peers/serve_torch.py), back to back, for
# issue 9's benchmark. Run by hand from the repository root after `swift build -c release`:
#
#   Benchmarks/serve_vs_torch.sh WORK_DIR IMAGE.jpg IMAGE_SIZE PATCH DEPTH [DURATION] [ROUNDS]
#
# It writes a random model of that shape (dim 192, 3 heads, 1,000 classes) into WORK_DIR with
# `catlip bench infer --save-model`, then:
# 1. a sweep, once: `catlip bench serve` (closed loop, 1, 8 and 32 clients sending IMAGE.jpg)
#    against catlip serve over TCP, then against the peer in its two modes (serial: one forward
#    at a time; threads: FastAPI's thread pool) over TCP;
# 2. ROUNDS (default 5) alternating rounds of the figures the bars compare: `catlip bench infer`
#    at batch 32 (what 32 clients can fill), catlip serve at 32 clients over TCP and over its
#    Unix socket, the peer at 32 clients in both modes; then the medians of each and of the
#    per-round ratios (catlip TCP / bench infer, catlip TCP / the round's better peer mode).
# The machine's cores are time-shared, so single figures move by 10-20% between minutes; the
# medians over alternating rounds are what to quote. PRECISION=bf16 runs every side at bf16:
# catlip serve and bench infer with --precision bf16, the peer under torch.autocast(bfloat16).
# Needs /opt/catlip-peers (torch, torchvision, timm, fastapi, uvicorn from pip) and curl.
set -eu
WORK=$1 IMG=$2 SIZE=$3 PATCH=$4 DEPTH=$5 D=${6:-10} ROUNDS=${7:-5} PRECISION=${PRECISION:-fp32}
R=.build/release/catlip
PY=${PY:-/opt/catlip-peers/bin/python}
M=$WORK/model-$SIZE-$PATCH-$DEPTH
LOG=$WORK/rounds-$SIZE-$PATCH-$DEPTH-$PRECISION.jsonl
mkdir -p "$WORK"
: >"$LOG"
SHAPE=(--image-size "$SIZE" --patch "$PATCH" --depth "$DEPTH")

wait_healthy() {
  for _ in $(seq 1 120); do curl -s -o /dev/null "$1/healthz" && return 0; sleep 0.5; done
  echo "no answer from $1" >&2; return 1
}
# catlip_run ROUND CLIENTS TRANSPORT...: one daemon, `bench serve` over the given transports
catlip_run() {
  local round=$1 clients=$2; shift 2
  rm -f "$WORK/s.sock"
  $R serve --model "$M" --socket "$WORK/s.sock" --listen 127.0.0.1:8781 --precision "$PRECISION" 2>"$WORK/serve.err" &
  local sp=$!
  wait_healthy http://127.0.0.1:8781
  for t in "$@"; do
    local target=(--url http://127.0.0.1:8781)
    [ "$t" = unix ] && target=(--socket "$WORK/s.sock")
    echo "catlip-$t"
    $R bench serve "${target[@]}" --image "$IMG" --clients "$clients" --duration "$D" --warmup 3 | tagged "catlip-$t" "$round"
  done
  kill -TERM $sp; wait $sp || true
}
# peer_run ROUND MODE CLIENTS
peer_run() {
  $PY Benchmarks/peers/serve_torch.py --model "$M" --port 8790 --threads 2 --mode "$2" --precision "$PRECISION" 2>"$WORK/peer.err" &
  local pp=$!
  wait_healthy http://127.0.0.1:8790
  echo "peer-$2"
  $R bench serve --url http://127.0.0.1:8790 --image "$IMG" --clients "$3" --duration "$D" --warmup 3 | tagged "peer-$2" "$1"
  kill $pp; wait $pp 2>/dev/null || true
}
# tagged NAME ROUND: prefix each JSON line on stdin with {"run": NAME, "round": ROUND, ...}, copy to the log
tagged() {
  while IFS= read -r line; do
    case $line in
      "{"*) line="{\"run\":\"$1\",\"round\":$2,${line#\{}"; echo "$line"; echo "$line" >>"$LOG" ;;
      *) echo "$line" ;;
    esac
  done
}

echo "== model $SIZE px, patch $PATCH, depth $DEPTH, $PRECISION; $(date -u +%FT%TZ); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bench-infer"; $R bench infer "${SHAPE[@]}" --batch 32 --steps 10 --precision "$PRECISION" --save-model "$M" | tail -1 | tagged infer 0
echo "-- sweep"
catlip_run 0 1,8,32 tcp
for mode in serial threads; do peer_run 0 $mode 1,8,32; done
for r in $(seq 1 "$ROUNDS"); do
  echo "-- round $r of $ROUNDS; $(date -u +%TZ); load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "bench-infer"; $R bench infer "${SHAPE[@]}" --batch 32 --steps 10 --precision "$PRECISION" | tail -1 | tagged infer "$r"
  catlip_run "$r" 32 tcp unix
  for mode in serial threads; do peer_run "$r" $mode 32; done
done
echo "-- medians over rounds 1-$ROUNDS ($LOG)"
python3 - "$LOG" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rounds = sorted({r["round"] for r in rows if r["round"] > 0})
def fig(run, rnd, key="images_per_s"):
    for r in rows:
        if r["run"] == run and r["round"] == rnd and r.get("clients", 32) == 32:
            return r[key]
    return None
table = []
for n in rounds:
    infer, tcp, unix = fig("infer", n), fig("catlip-tcp", n), fig("catlip-unix", n)
    peers = {m: fig("peer-" + m, n) for m in ("serial", "threads")}
    best = max(peers, key=lambda m: peers[m])
    row = dict(round=n, infer=infer, tcp=tcp, unix=unix, tcp_p99=fig("catlip-tcp", n, "p99_ms"),
               peer=peers[best], peer_mode=best, peer_p99=fig("peer-" + best, n, "p99_ms"),
               to_infer=tcp / infer, to_peer=tcp / peers[best])
    table.append(row)
    print("round %(round)d: infer %(infer).1f, catlip tcp %(tcp).1f (p99 %(tcp_p99).0f ms), unix %(unix).1f, "
          "peer %(peer).1f %(peer_mode)s (p99 %(peer_p99).0f ms): %(to_infer).2f of infer, %(to_peer).2fx the peer" % row)
med = lambda k: statistics.median(r[k] for r in table)
print("medians: infer %.1f, catlip tcp %.1f (p99 %.0f ms), unix %.1f, peer %.1f (p99 %.0f ms); "
      "catlip/infer %.2f (rounds %.2f-%.2f), catlip/peer %.2fx (rounds %.2f-%.2f); catlip p99 lower in %d of %d"
      % (med("infer"), med("tcp"), med("tcp_p99"), med("unix"), med("peer"), med("peer_p99"),
         med("to_infer"), min(r["to_infer"] for r in table), max(r["to_infer"] for r in table),
         med("to_peer"), min(r["to_peer"] for r in table), max(r["to_peer"] for r in table),
         sum(r["tcp_p99"] < r["peer_p99"] for r in table), len(table)))
EOF
