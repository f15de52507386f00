#!/usr/bin/env bash
# Same-recipe, same-wall-time comparison of vocoder architectures (docs/benchmarks.md, "Vocoder
# quality"): each config trains for MINUTES of wall time on one CPU thread with the bundled
# vocoder's CPU recipe (mel L1 + multi-resolution STFT, no discriminators, batch 8 of 128 frames),
# then tools/vocoder_quality.py scores every run's best export on the test split.
#
#   bash tools/compare_vocoders.sh [CACHE] [MINUTES] [CONFIG ...]
#
# Defaults: data/cache, 30 minutes, hifigan_v3 and istft (piano_cpu is the bundled recipe itself:
# train it the same way, or compare with its run's validation curve at the same wall time).
# Runs go to runs/compare-<config>; run two at a time on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${1:-data/cache}
MINUTES=${2:-30}
shift $(( $# > 2 ? 2 : $# ))
CONFIGS=("$@")
[ ${#CONFIGS[@]} -gt 0 ] || CONFIGS=(hifigan_v3 istft)
export OMP_NUM_THREADS=1

RECIPE=(
  "discriminator=null"
  'loss_weights={"mel/l1": 45.0, "stft/mr": 5.0, "adv/gen": 0.0}'
  "optim.lr=7.0e-4" "optim.lr_decay=0.98" "optim.warmup_steps=200" "optim.grad_clip=100.0"
  "train.batch_size=8" "train.segment_frames=128" "train.ema_decay=0.995" "train.max_steps=1000000"
  "train.log_every=25" "train.val_every=250" "train.ckpt_every=250" "train.val_pieces=4"
  "train.val_seconds=6.0" "train.num_workers=0" "train.max_minutes=$MINUTES"
)
sets=()
for item in "${RECIPE[@]}"; do sets+=(--set "$item"); done

pids=()
for name in "${CONFIGS[@]}"; do
  .venv/bin/python train_vocoder.py --config "configs/vocoder/$name.yaml" --data "$CACHE" \
    --out "runs/compare-$name" --resume "${sets[@]}" > "runs/compare-$name.log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"

args=()
for name in "${CONFIGS[@]}"; do args+=(--vocoder "$name=runs/compare-$name/best"); done
.venv/bin/python tools/vocoder_quality.py --cache "$CACHE" --split test "${args[@]}" --out runs/compare-report
