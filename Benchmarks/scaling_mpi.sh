#!/bin/bash
# Data-parallel scaling on one machine (issue 10's benchmark): 1 rank x 1 thread with the
# global batch against 2 ranks x 1 thread with half of it each, training configs/demo.yaml's
# model on data/scenes (run `make demo` or `make data` first). Run by hand from the repository
# root after `swift build -c release`:
#
#   Benchmarks/scaling_mpi.sh WORK_DIR [STEPS] [GLOBAL_BATCH] [CONFIG]
#
# Prints the last logging interval of each run's metrics.jsonl (images_per_s; comm_wait = the
# fraction of rank 0's step time spent waiting for the gradient sums).
set -eu
WORK=$1 STEPS=${2:-120} BATCH=${3:-64} CONFIG=${4:-configs/demo.yaml}
R=.build/release/catlip
rm -rf "$WORK/one" "$WORK/two"
mkdir -p "$WORK"
COMMON=(--set data.val= --set run.steps="$STEPS" --set run.log_every=$((STEPS / 3)) --set run.checkpoint_every=0
        --set run.checkpoint_minutes=0 --set run.threads=1 --set data.threads=1 --set optim.warmup_steps=1)
echo "== $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
$R train --config "$CONFIG" --set run.dir="$WORK/one" --set data.batch_size="$BATCH" "${COMMON[@]}" > "$WORK/one.log"
echo "1 rank x 1 thread, batch $BATCH: $(tail -n 1 "$WORK/one/metrics.jsonl")"
mpirun --allow-run-as-root -np 2 --bind-to none "$R" train --config "$CONFIG" --set run.dir="$WORK/two" \
  --set data.batch_size=$((BATCH / 2)) "${COMMON[@]}" > "$WORK/two.log"
echo "2 ranks x 1 thread, batch $((BATCH / 2)) each: $(tail -n 1 "$WORK/two/metrics.jsonl")"
