#!/usr/bin/env bash
# Fine-tuning, catlip against PyTorch + timm, same session (issue 20's speed and learning bars):
# `catlip train --config configs/finetune-demo.yaml --set ...` and Benchmarks/peers/finetune_timm.py
# (timm's VisionTransformer, create_optimizer_v2 with layer decay, Mixup when the preset mixes,
# CosineLRScheduler, torchvision ImageFolder + DataLoader) from the same preset and the same --set
# overrides, alternating catlip / peer.
#
#   Benchmarks/finetune_vs_timm.sh speed [ROUNDS] [CASE ...]   # median images/s of each side, ratio
#   Benchmarks/finetune_vs_timm.sh learn [SEEDS] [CASE ...]    # final validation top-1 per seed
#
#   e.g. Benchmarks/finetune_vs_timm.sh speed 3 demo ti
#        Benchmarks/finetune_vs_timm.sh learn "0 1 2" demo
#
# CASE (default: demo ti for speed, demo for learn):
#   demo  the demo model ($DEMO_MODEL, configs/demo.yaml's ViT: 64 px, patch 8, dim 128, depth 4,
#         4 heads, avg pooling, no class token) fine-tuned with configs/finetune-demo.yaml as it is
#         (batch 32, RandomResizedCrop 0.5-1 + flip, AdamW lr 3e-4 with 50 warm-up steps and cosine
#         to 1e-6, weight decay 0.05, layer decay 0.75, label smoothing 0.1, clipping at 1).
#   ti    ViT-Ti/16 at 224 px (timm vit_tiny_patch16_224's layout: dim 192, depth 12, 3 heads, class
#         token, token pooling) with the same recipe: configs/finetune-demo.yaml with the model keys
#         and data.image_size=224 set. It starts from a random ViT-Ti/16 model directory written by
#         `catlip bench infer --save-model` (seed 0; only for speed: its weights are not pretrained,
#         so in learn mode ti is a from-scratch-like run, not a transfer result).
# Data: the held-out drawings ($DATA), split per class as `catlip eval transfer` splits
# them (classes with at least two images; sorted files, even ones train, odd ones validation),
# copied into $WORK/train and $WORK/val (ImageFolders). Both sides: model.head_init=random (the
# peer has no WordNet mapper for Transfer Init; a random head is timm's usual new classifier),
# run.threads=$THREADS compute threads and data.threads=$THREADS decode workers (catlip: threads,
# the peer: DataLoader worker processes), the same batch, steps, seed and schedule.
# Steps: speed mode runs $STEPS steps (default 100 for demo, 40 for ti; the cosine follows);
# learn mode the preset's run.steps (300) unless STEPS is set. $EXTRA adds --set overrides to
# both sides, e.g. EXTRA="data.mixup=0.8 data.cutmix=1.0" for timm's Mixup/CutMix on both.
#
# Timing, the same on both sides: steps 1..$WARMUP (default 5) are left out; images/s = images of
# steps WARMUP+1..N / seconds from the end of step WARMUP to the end of step N, loader waits
# included. catlip: from its metrics.jsonl, written every WARMUP steps (run.log_every=$WARMUP), as
# (samples at step N - samples at step WARMUP) / (seconds at N - seconds at WARMUP); its "seconds"
# is training time, with run.checkpoint_every=0, run.checkpoint_minutes=0 and run.eval_every=0 so
# that no checkpoint or validation falls inside the timed steps (the final checkpoint and the
# validation come after step N's line). The peer: perf_counter after each optimizer step, the
# same formula (its JSON line's images_per_s). Speed mode runs without validation.
# $PEER_SETS adds --set overrides to the peer alone, to try the peer's best loader setting, e.g.
# PEER_SETS="data.threads=1" (one DataLoader worker: torch's two OpenMP threads spin while they
# wait, and two worker processes on two cores take time from them); the difference is printed.
# After each case's first round the two resolved configurations are compared (catlip's run
# config.yaml against the peer's "config"), and any key that differs is printed.
#
# Not matched (see the peer's docstring): random draws (order, crops, flips, head init, Mixup),
# PIL's resize against catlip's, catlip's loader threads against DataLoader worker processes.
#
# Epochs: the 157 training drawings make 4 batches of 32 (both drop the last partial batch), so
# an epoch ends every 4 steps inside the timed steps on both sides: catlip's loader starts the
# next epoch when one runs dry, the peer starts a new DataLoader iterator (timm's epoch loop;
# its worker processes persist, their prefetch restarts).
# A smoke test (a few steps; warm-up shortened below the steps, as catlip requires):
#   STEPS=20 Benchmarks/finetune_vs_timm.sh speed 1 demo ti
#   STEPS=20 EXTRA="optim.warmup_steps=5" Benchmarks/finetune_vs_timm.sh learn "0 1" demo
#
# Needs a release build (swift build -c release --product catlip; CATLIP=... for another binary),
# the peer environment (/opt/catlip-peers, see BENCHMARKS.md) and the demo model (make demo, or
# DEMO_MODEL=DIR). Run by hand on a quiet machine; not part of the tests. KEEP=1 keeps $WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?usage: $0 speed|learn [ROUNDS|SEEDS] [CASE ...]}
shift
case "$MODE" in
    speed) ROUNDS=${1:-3}; shift || true ;;
    learn) SEEDS=${1:-0 1 2}; shift || true ;;
    *) echo "usage: $0 speed|learn [ROUNDS|SEEDS] [CASE ...]" >&2; exit 2 ;;
esac
CASES=("$@")
[ "${WARMUP:-5}" -ge 1 ] || { echo "WARMUP must be at least 1 (catlip's run.log_every)" >&2; exit 2; }
if [ ${#CASES[@]} -eq 0 ]; then
    if [ "$MODE" = speed ]; then CASES=(demo ti); else CASES=(demo); fi
fi
CATLIP=${CATLIP:-.build/release/catlip}
PY=${PY:-/opt/catlip-peers/bin/python}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-5}
DEMO_MODEL=${DEMO_MODEL:-runs/demo/model}
DATA=${DATA:-data/objects/heldout}
EXTRA=${EXTRA:-}
PEER_SETS=${PEER_SETS:-}
WORK=${WORK:-$(mktemp -d /tmp/finetune-vs-timm.XXXXXX)}
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
[ -x "$CATLIP" ] || { echo "$CATLIP: no catlip binary (swift build -c release --product catlip, or CATLIP=...)" >&2; exit 1; }

# catlip eval transfer's split: per class with >= 2 images, sorted files, even -> train, odd -> val
python3 - "$DATA" "$WORK" <<'EOF'
import os, shutil, sys
data, work = sys.argv[1:]
counts = {"train": 0, "val": 0}
for c in sorted(os.listdir(data)):
    d = os.path.join(data, c)
    if not os.path.isdir(d):
        continue
    files = sorted(f for f in os.listdir(d) if f.lower().endswith((".png", ".jpg", ".jpeg")))
    if len(files) < 2:
        continue
    for split, chosen in (("train", files[0::2]), ("val", files[1::2])):
        os.makedirs(os.path.join(work, split, c), exist_ok=True)
        for f in chosen:
            shutil.copy(os.path.join(d, f), os.path.join(work, split, c, f))
        counts[split] += len(chosen)
print(f"# split of {data}: {counts['train']} training, {counts['val']} validation images in {work}", file=sys.stderr)
EOF

prepare_case() {  # CASE: checks or writes the model the case starts from
    case "$1" in
        demo) [ -f "$DEMO_MODEL/model.safetensors" ] || { echo "$DEMO_MODEL: no demo model (make demo, or DEMO_MODEL=DIR)" >&2; exit 1; } ;;
        ti) [ -f "$WORK/ti16/model.safetensors" ] || "$CATLIP" bench infer --image-size 224 --patch 16 --dim 192 \
                --depth 12 --heads 3 --vocab 1000 --batch 1 --steps 1 --save-model "$WORK/ti16" > /dev/null ;;
        *) echo "unknown case $1 (demo or ti)" >&2; exit 2 ;;
    esac
}

case_sets() {  # CASE -> the --set values both sides get for the case
    case "$1" in
        demo) echo "model.init=$DEMO_MODEL" ;;
        ti)
            echo "data.image_size=224 model.patch_size=16 model.embed_dim=192 model.depth=12 model.num_heads=3" \
                "model.global_pool=token model.class_token=true model.init=$WORK/ti16"
            ;;
        *) echo "unknown case $1 (demo or ti)" >&2; exit 2 ;;
    esac
}

default_steps() { case "$1" in demo) echo 100 ;; ti) echo 40 ;; esac; }

# run_pair CASE SEED STEPS VAL TAG: one catlip run, then one peer run; writes "CATLIP_JSON<TAB>PEER_JSON"
# to $WORK/pair.tsv, each JSON with images_per_s, train_seconds and (with VAL) val_top1, val_top5.
run_pair() {
    local c=$1 seed=$2 steps=$3 val=$4 tag=$5 sets=() s
    # speed runs are shorter than the preset's 50 warm-up steps: a quarter of the steps warm up
    local warm=()
    if [ "$MODE" = speed ]; then warm=("optim.warmup_steps=$((steps / 4))"); fi
    for s in $(case_sets "$c") model.head_init=random "data.train=$WORK/train" "data.val=$val" "run.steps=$steps" \
        "run.seed=$seed" "run.threads=$THREADS" "data.threads=$THREADS" "${warm[@]}" $EXTRA; do
        sets+=(--set "$s")
    done
    local run=$WORK/runs/$tag-catlip peer=$WORK/runs/$tag-timm
    rm -rf "$run" "$peer"
    "$CATLIP" train --config configs/finetune-demo.yaml "${sets[@]}" --set "run.dir=$run" \
        --set "run.log_every=$WARMUP" --set run.checkpoint_every=0 --set run.checkpoint_minutes=0 \
        --set run.eval_every=0 > "$WORK/runs/$tag-catlip.out" 2>&1 \
        || { tail -5 "$WORK/runs/$tag-catlip.out" >&2; exit 1; }
    local peer_sets=()
    for s in $PEER_SETS; do peer_sets+=(--set "$s"); done
    "$PY" Benchmarks/peers/finetune_timm.py --config configs/finetune-demo.yaml "${sets[@]}" "${peer_sets[@]}" \
        --timing-warmup "$WARMUP" --out "$peer" > "$peer.json" 2> "$WORK/runs/$tag-timm.err" \
        || { tail -5 "$WORK/runs/$tag-timm.err" >&2; exit 1; }
    python3 - "$run" "$peer.json" "$WARMUP" "$steps" > "$WORK/pair.tsv" <<'EOF'
import json, sys
run, peer, warm, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lines = [json.loads(l) for l in open(f"{run}/metrics.jsonl") if l.strip()]
by_step = {l["step"]: l for l in lines if "samples" in l}
a, b = by_step[warm], by_step[steps]
summary = json.load(open(f"{run}/summary.json"))
ours = {"images_per_s": round((b["samples"] - a["samples"]) / (b["seconds"] - a["seconds"]), 2),
        "train_seconds": b["seconds"]}
for k in ("val_top1", "val_top5"):
    if k in summary:
        ours[k] = summary[k]
theirs = json.loads(open(peer).read().strip().splitlines()[-1])
print(json.dumps(ours) + "\t" + json.dumps({k: theirs[k] for k in ("images_per_s", "train_seconds", "val_top1", "val_top5") if k in theirs}))
EOF
}

# compare_configs TAG: keys the peer used whose value differs from catlip's resolved config.yaml
compare_configs() {
    python3 - "$WORK/runs/$1-catlip/config.yaml" "$WORK/runs/$1-timm.json" <<'EOF'
import json, re, sys
ours, section = {}, None
for line in open(sys.argv[1]):
    if line.startswith("#") or not line.strip():
        continue
    if not line.startswith(" "):
        section = line.strip().rstrip(":")
        continue
    key, _, value = line.strip().partition(": ")
    ours[f"{section}.{key}"] = value.strip().strip('"')
theirs = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])["config"]
def norm(v):
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float)):
        return repr(float(v))
    if isinstance(v, list):
        return "[" + ", ".join(norm(x) for x in v) + "]"
    try:
        return repr(float(v))
    except ValueError:
        pass
    if v.startswith("["):
        return "[" + ", ".join(norm(x.strip()) for x in v.strip("[]").split(",") if x.strip()) + "]"
    return v
diff = [f"{k}: catlip {ours[k]}, peer {theirs[k]}" for k in sorted(theirs) if k in ours and norm(ours[k]) != norm(theirs[k])]
print("# configurations: " + ("the same on every shared key" if not diff else "DIFFER: " + "; ".join(diff)))
EOF
}

field() { python3 -c "import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], 'nan'))" "$1" "$2"; }

mkdir -p "$WORK/runs"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $("$CATLIP" --version | head -1)," \
    "$(cd Benchmarks/peers && "$PY" -c 'from torchvision_compat import import_torchvision; import_torchvision(); import torch, timm; print(f"torch {torch.__version__}, timm {timm.__version__}")'), $MODE"
for c in "${CASES[@]}"; do
    prepare_case "$c"
    if [ "$MODE" = speed ]; then
        steps=${STEPS:-$(default_steps "$c")}
        ours=() theirs=() ratios=()
        for r in $(seq "$ROUNDS"); do
            run_pair "$c" 0 "$steps" "" "$c-r$r"
            IFS=$'\t' read -r o t < "$WORK/pair.tsv"
            if [ "$r" = 1 ]; then compare_configs "$c-r$r"; fi
            o=$(field "$o" images_per_s) t=$(field "$t" images_per_s)
            ours+=("$o") theirs+=("$t")
            ratios+=("$(python3 -c "print(round($o / $t, 2))")")
            echo "$c round $r ($steps steps, timed after $WARMUP): catlip $o, timm $t images/s"
        done
        python3 - "$c" "${ours[*]}" "${theirs[*]}" "${ratios[*]}" <<'EOF'
import statistics, sys
c, o, t, r = sys.argv[1], *(list(map(float, a.split())) for a in sys.argv[2:])
print(f"{c}: catlip {statistics.median(o):.1f}, PyTorch+timm {statistics.median(t):.1f} images/s (medians), "
      f"ratio {statistics.median(r):.2f}x (rounds {', '.join(f'{x:.2f}' for x in r)})")
EOF
    else
        steps=${STEPS:-300}
        ours=() theirs=()
        for seed in $SEEDS; do
            run_pair "$c" "$seed" "$steps" "$WORK/val" "$c-s$seed"
            IFS=$'\t' read -r o t < "$WORK/pair.tsv"
            if [ "$seed" = "${SEEDS%% *}" ]; then compare_configs "$c-s$seed"; fi
            ours+=("$(field "$o" val_top1)") theirs+=("$(field "$t" val_top1)")
            echo "$c seed $seed ($steps steps): catlip top-1 $(field "$o" val_top1) top-5 $(field "$o" val_top5)" \
                "($(field "$o" images_per_s) images/s), timm top-1 $(field "$t" val_top1) top-5 $(field "$t" val_top5)" \
                "($(field "$t" images_per_s) images/s)"
        done
        python3 - "$c" "${ours[*]}" "${theirs[*]}" <<'EOF'
import statistics, sys
c, o, t = sys.argv[1], *(list(map(float, a.split())) for a in sys.argv[2:])
sd = lambda x: statistics.stdev(x) if len(x) > 1 else float("nan")
print(f"{c}: validation top-1 catlip {statistics.mean(o):.4f} +- {sd(o):.4f}, PyTorch+timm {statistics.mean(t):.4f} "
      f"+- {sd(t):.4f} (mean +- sd over {len(o)} seeds), difference {statistics.mean(o) - statistics.mean(t):+.4f}")
EOF
    fi
done
