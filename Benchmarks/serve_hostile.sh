#!/bin/bash
# The daemon under hostile clients (issue 17's bar), run by hand from the repository root after
# `swift build -c release --product catlip`:
#
#   Benchmarks/serve_hostile.sh WORK_DIR [DURATION] [ROUNDS]
#
# Writes a random ViT-Ti/16 at 224 px (dim 192, depth 12, 3 heads, 1,000 classes; the model of
# BENCHMARKS.md "The daemon under load") into WORK_DIR with `catlip bench infer --save-model`,
# and a 224 x 224 JPEG (a colour gradient with +-20 of fixed pseudo-random noise per sample,
# libjpeg quality 90). Then ROUNDS (default 3) alternating rounds of two modes, each against a
# fresh `catlip serve` on its Unix socket (default limits but SERVE_ARGS, below):
# - unloaded: `catlip bench serve` with 32 closed-loop clients sending the JPEG to /v1/embed
#   (3 s warm-up, DURATION s measured, default 15);
# - hostile: the same 32 clients, and from the second second on 500 slow-drip connections (a
#   byte every 2 s, half of them trickling a head, half a body) and 2 oversized requests a
#   second (in turn: a 1 GiB Content-Length, an endless chunked body, 31 MiB of JSON numbers,
#   31 MiB of JSON base64 noise) - `bench serve --slow-drip 500 --oversized-per-s 2`.
# Around each round it reads the daemon's /proc/PID: descriptors before the load (after a second
# of light load, which opens what the daemon keeps open), their peak
# during it (sampled every 0.5 s) and after it (once the count stops falling, at most 15 s);
# VmRSS before, VmHWM (peak resident) at the end. Prints the rounds and the medians per mode.
set -eu
WORK=$1 D=${2:-15} ROUNDS=${3:-3}
R=${CATLIP:-.build/release/catlip}
# at the default --max-connections 512, 480 of the 500 drips get in beside the 32 clients and
# every other new connection (each oversized request) is refused with 503; 1024 lets all of
# them reach the receive deadline and the body limits. SERVE_ARGS= runs the defaults.
SERVE_ARGS=${SERVE_ARGS---max-connections 1024}
M=$WORK/model-224-16-12
IMG=$WORK/img224.jpg
LOG=$WORK/hostile-rounds.jsonl
mkdir -p "$WORK"
: >"$LOG"
[ -f "$M/config.json" ] || $R bench infer --image-size 224 --patch 16 --depth 12 --batch 32 --steps 2 --save-model "$M" >/dev/null
if [ ! -f "$IMG" ]; then
  cat >"$WORK/jpeg.c" <<'C'
#include <stdio.h>
#include <jpeglib.h>
int main(int argc, char **argv) {
    static unsigned char px[224 * 224 * 3];
    unsigned s = 17;
    for (int i = 0; i < 224 * 224 * 3; i++) {
        int y = i / (224 * 3), x = (i / 3) % 224, c = i % 3;
        s = s * 1103515245u + 12345u;
        int v = (c == 0 ? x : c == 1 ? y : (x + y) / 2) + (int)((s >> 16) % 41) - 20;
        px[i] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
    struct jpeg_compress_struct j; struct jpeg_error_mgr e;
    j.err = jpeg_std_error(&e); jpeg_create_compress(&j);
    FILE *f = fopen(argv[1], "wb"); jpeg_stdio_dest(&j, f);
    j.image_width = 224; j.image_height = 224; j.input_components = 3; j.in_color_space = JCS_RGB;
    jpeg_set_defaults(&j); jpeg_set_quality(&j, 90, TRUE); jpeg_start_compress(&j, TRUE);
    while (j.next_scanline < 224) { JSAMPROW row = px + j.next_scanline * 224 * 3; jpeg_write_scanlines(&j, &row, 1); }
    jpeg_finish_compress(&j); fclose(f); return 0;
}
C
  cc -O2 -o "$WORK/jpeg" "$WORK/jpeg.c" -ljpeg && "$WORK/jpeg" "$IMG"
fi

fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
status_mb() { awk -v k="$2:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# round ROUND MODE
round() {
  local sock=$WORK/s.sock extra=()
  [ "$2" = hostile ] && extra=(--slow-drip 500 --oversized-per-s 2)
  rm -f "$sock"
  $R serve --model "$M" --socket "$sock" $SERVE_ARGS 2>"$WORK/serve-$1-$2.err" &
  local sp=$!
  for _ in $(seq 1 120); do $R query --socket "$sock" health >/dev/null 2>&1 && break; sleep 0.5; done
  # a second of load first: the event loop opens its timerfd once, with its first timers
  $R bench serve --socket "$sock" --image "$IMG" --clients 2 --duration 1 --warmup 0 >/dev/null
  sleep 1
  local base rss peak after n
  base=$(fds $sp)
  rss=$(status_mb $sp VmRSS)
  $R bench serve --socket "$sock" --image "$IMG" --clients 32 --duration "$D" --warmup 3 "${extra[@]}" >"$WORK/bench.out" &
  local bp=$!
  peak=$base
  while kill -0 $bp 2>/dev/null; do
    n=$(fds $sp); [ "$n" -gt "$peak" ] && peak=$n
    sleep 0.5
  done
  wait $bp
  after=$(fds $sp)
  for _ in $(seq 1 30); do sleep 0.5; n=$(fds $sp); [ "$n" -ge "$after" ] && [ "$n" -le "$base" ] && break; after=$n; done
  after=$(fds $sp)
  local hwm
  hwm=$(status_mb $sp VmHWM)
  kill -TERM $sp
  wait $sp || true
  python3 - "$1" "$2" "$base" "$peak" "$after" "$rss" "$hwm" "$WORK/bench.out" <<'PY' | tee -a "$LOG"
import json, sys
rnd, mode, base, peak, after, rss, hwm, out = sys.argv[1:]
lines = [json.loads(l) for l in open(out) if l.startswith("{")]
load = next(l for l in lines if "p99_ms" in l)
row = dict(round=int(rnd), mode=mode, requests_per_s=load["requests_per_s"], p50_ms=load["p50_ms"], p99_ms=load["p99_ms"],
           errors=load["errors"], first_error=load.get("first_error"), fds_before=int(base), fds_peak=int(peak),
           fds_after=int(after), rss_before_mb=float(rss), vmhwm_mb=float(hwm))
for l in lines:
    if "hostile" in l: row["hostile"] = l["hostile"]
print(json.dumps(row))
PY
}

echo "== $(date -u +%FT%TZ); load $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
for r in $(seq 1 "$ROUNDS"); do
  for mode in unloaded hostile; do round "$r" "$mode"; done
done
python3 - "$LOG" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for mode in ("unloaded", "hostile"):
    rs = [r for r in rows if r["mode"] == mode]
    med = lambda k: statistics.median(r[k] for r in rs)
    print("%-8s medians over %d rounds: %.1f req/s, p50 %.0f ms, p99 %.0f ms, errors %d; fds %d -> peak %d -> %d; "
          "RSS %.0f MiB before, VmHWM %.0f MiB (max %.0f)" % (mode, len(rs), med("requests_per_s"), med("p50_ms"), med("p99_ms"),
          max(r["errors"] for r in rs), med("fds_before"), med("fds_peak"), med("fds_after"), med("rss_before_mb"),
          med("vmhwm_mb"), max(r["vmhwm_mb"] for r in rs)))
u = statistics.median(r["p99_ms"] for r in rows if r["mode"] == "unloaded")
h = statistics.median(r["p99_ms"] for r in rows if r["mode"] == "hostile")
print("p99 hostile / unloaded: %.2f (bar: at most 2)" % (h / u))
PY
