#!/usr/bin/env bash
# The ViT engine against PyTorch, same session (issue 4): `catlip bench train|infer` and
# Benchmarks/peers/vit_torch.py on the same shapes, alternating, ROUNDS rounds, then the median
# images/s of each side and the median of the per-round ratios.
#
#   Benchmarks/vit_vs_torch.sh [ROUNDS] [CASE ...]
#
# CASE is one of a-train a-infer ti-train ti-infer a24k-train (default: the first four), or
# a-bf16-infer / ti-bf16-infer: inference at bf16 on both sides (catlip --precision bf16,
# the peer under torch.autocast(bfloat16)); b16c-infer / b16c-bf16-infer: CatLIP's released
# ViT-B/16 architecture (corenet's convolutional stem, 24,320 classes) at 224 px (issue 22).
# Needs a release build (swift build -c release --product catlip) and the peer environment
# (/opt/catlip-peers, see BENCHMARKS.md). Run by hand; not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
shift || true
CASES=("$@")
[ ${#CASES[@]} -gt 0 ] || CASES=(a-train a-infer ti-train ti-infer)
CATLIP=${CATLIP:-.build/release/catlip}
PY=${PY:-/opt/catlip-peers/bin/python}
THREADS=${THREADS:-2}

args_for() {
    case "$1" in
        a-*) echo "" ;;
        a24k-*) echo "--vocab 24320" ;;
        ti-*) echo "--image-size 224 --patch 16 --depth 12 --batch 32 --steps 10" ;;
        b16c-*) echo "--corenet-stem --image-size 224 --patch 16 --dim 768 --depth 12 --heads 12 --vocab 24320 --batch 8 --steps 5" ;;
        *) echo "unknown case $1" >&2; exit 2 ;;
    esac
}

catlip_extra() { case "$1" in *-bf16-*) echo "--precision bf16" ;; *) echo "" ;; esac; }
peer_extra() { case "$1" in *-bf16-*) echo "--bf16" ;; *) echo "" ;; esac; }

field() { sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p" | head -1; }

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for c in "${CASES[@]}"; do
    mode=${c##*-}
    extra=$(args_for "$c")
    ours=() theirs=() ratios=()
    for r in $(seq "$ROUNDS"); do
        # shellcheck disable=SC2086
        o=$("$CATLIP" bench "$mode" --threads "$THREADS" $extra $(catlip_extra "$c") | field images_per_s)
        # shellcheck disable=SC2086
        t=$("$PY" Benchmarks/peers/vit_torch.py "$mode" --threads "$THREADS" $extra $(peer_extra "$c") | field images_per_s)
        ours+=("$o") theirs+=("$t")
        ratios+=("$(python3 -c "print(round($o / $t, 2))")")
        echo "$c round $r: catlip $o, PyTorch $t images/s"
    done
    python3 - "$c" "${ours[*]}" "${theirs[*]}" "${ratios[*]}" <<'EOF'
import statistics, sys
c, o, t, r = sys.argv[1], *(list(map(float, a.split())) for a in sys.argv[2:])
print(f"{c}: catlip {statistics.median(o):.1f}, PyTorch {statistics.median(t):.1f} images/s, "
      f"ratio {statistics.median(r):.2f}x (rounds {', '.join(f'{x:.2f}' for x in r)})")
EOF
done
