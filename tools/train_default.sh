#!/usr/bin/env bash
# Rebuild the bundled default models from scratch on this kind of machine (2 CPU cores), the way
# the shipped ones were made: render the demo set, prepare the cache, train the vocoder and the
# spectrogram VAE/GAN side by side (one core each), then the latent prior on the VAE, then a
# second stage of the vocoder and the prior side by side, each started from the first stage's
# export (`--set init_from=...`: the weights only; optimiser and schedule start afresh, which is
# how the shipped models were continued after their first runs' checkpoints were lost), and
# copy the exports into audiogen/pretrained/; then a third stage of the prior on the whole shared
# set (below). Each stage has the wall-time budget the shipped
# models had (train.max_minutes; their model cards, audiogen/pretrained/*/MODEL_CARD.md, give the
# exact steps); set the *_MINUTES variables to train longer.
#
#   bash tools/train_default.sh [MIDI_DIR] [METADATA_CSV]
#
# Without arguments it renders ../shared/data/maestro-midi (499 MAESTRO performances as MIDI) if
# present, else music21's corpus. Each stage resumes if rerun (--resume).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
MIDI_DIR=${1:-../shared/data/maestro-midi}
METADATA=${2:-$MIDI_DIR/maestro-midi.csv}
VOCODER_MINUTES=${VOCODER_MINUTES:-31}
VAE_MINUTES=${VAE_MINUTES:-105}
PRIOR_MINUTES=${PRIOR_MINUTES:-59}
VOCODER_STAGE2_MINUTES=${VOCODER_STAGE2_MINUTES:-95}
PRIOR_STAGE2_MINUTES=${PRIOR_STAGE2_MINUTES:-80}
PRIOR_STAGE3_STEPS=${PRIOR_STAGE3_STEPS:-9500}
export OMP_NUM_THREADS=1  # two trainers share two cores

if [ -d "$MIDI_DIR" ]; then
  $PY tools/make_demo_dataset.py --midi-dir "$MIDI_DIR" --metadata "$METADATA" --hours 8 --workers 1 --out data/demo
else
  $PY tools/make_demo_dataset.py --out data/demo
fi
.venv/bin/audiogen-prepare --maestro data/demo --out data/cache --workers 2

$PY train_vocoder.py --config configs/vocoder/piano_cpu.yaml --data data/cache --out runs/vocoder \
  --set train.max_minutes="$VOCODER_MINUTES" --resume > runs-vocoder.log 2>&1 &
vocoder=$!
$PY train_spec.py --config configs/spec/piano_cpu.yaml --data data/cache --out runs/vae \
  --set train.max_minutes="$VAE_MINUTES" --resume
$PY train_spec.py --config configs/spec/piano_cpu_prior.yaml --data data/cache --out runs/prior \
  --set train.max_minutes="$PRIOR_MINUTES" --set vae_dir=runs/vae/best --resume
wait "$vocoder"

$PY train_vocoder.py --config configs/vocoder/piano_cpu.yaml --data data/cache --out runs/vocoder-ft \
  --set init_from=runs/vocoder/best --set train.max_minutes="$VOCODER_STAGE2_MINUTES" --resume \
  > runs-vocoder-ft.log 2>&1 &
vocoder=$!
$PY train_spec.py --config configs/spec/piano_cpu_prior.yaml --data data/cache --out runs/prior-ft \
  --set vae_dir=runs/vae/best --set init_from=runs/prior/best --set train.max_minutes="$PRIOR_STAGE2_MINUTES" \
  --resume
wait "$vocoder"

for name in spec vocoder; do  # keep the model cards; replace the weights, config and provenance
  mkdir -p "audiogen/pretrained/$name"
  find "audiogen/pretrained/$name" -maxdepth 1 -type f ! -name MODEL_CARD.md -delete
done

# Stage 3 of the prior (2026-12-01): all 500 performances (35.1 h of training audio, the official
# splits), started from stage 2's export at half the learning rate. The shipped run was stopped by
# hand at step 9,500 (75 min on one thread, slowed by other work on the machine) and exported at
# its best validation, step 8,750; steps, not minutes, make it again.
if [ -d "$MIDI_DIR" ]; then
  $PY tools/make_demo_dataset.py --midi-dir "$MIDI_DIR" --metadata "$METADATA" --workers 2 --out data/demo-all
  .venv/bin/audiogen-prepare --maestro data/demo-all --out data/cache-all --workers 2
  $PY train_spec.py --config configs/spec/piano_cpu_prior.yaml --data data/cache-all --out runs/prior-stage3 \
    --set vae_dir=runs/vae/best --set init_from=runs/prior-ft/best --set optim.lr=5.0e-4 \
    --max-steps "$PRIOR_STAGE3_STEPS" --resume
  prior=runs/prior-stage3/best
else
  prior=runs/prior-ft/best
fi
cp "$prior"/* audiogen/pretrained/spec/
cp runs/vocoder-ft/best/* audiogen/pretrained/vocoder/
echo "bundled models updated; write their figures into audiogen/pretrained/*/MODEL_CARD.md"
