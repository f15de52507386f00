#!/usr/bin/env bash
# Rebuild the bundled default models from scratch on this kind of machine (2 CPU cores), the way
# the shipped ones were made: render the 8-h demo set, prepare its cache, train the vocoder and
# the spectrogram VAE/GAN side by side (one core each), then a second stage of the vocoder
# started from the first stage's export (`--set init_from=...`: the weights only; optimiser and
# schedule start afresh, which is how the shipped vocoder was continued after its first run's
# checkpoints were lost); then render the whole shared set and train the token prior
# (configs/spec/piano_cpu_token_prior.yaml) on the VAE's latents of all of it; copy the exports
# into audiogen/pretrained/ and export the ONNX graphs `generate` runs on onnxruntime. The
# vocoder and VAE stages have the wall-time budgets the shipped models had (train.max_minutes);
# the prior's run is given in steps (it was slowed by other work on the machine). The model
# cards, audiogen/pretrained/*/MODEL_CARD.md, give the exact steps; set the variables to train
# longer. (The mixture prior bundled until 2026-12-01 and how it was trained: docs/priors.md.)
#
#   bash tools/train_default.sh [MIDI_DIR] [METADATA_CSV]
#
# Without arguments it renders ../shared/data/maestro-midi (499 MAESTRO performances as MIDI) if
# present, else music21's corpus (and trains the prior on that). Each stage resumes if rerun (--resume).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
MIDI_DIR=${1:-../shared/data/maestro-midi}
METADATA=${2:-$MIDI_DIR/maestro-midi.csv}
VOCODER_MINUTES=${VOCODER_MINUTES:-31}
VAE_MINUTES=${VAE_MINUTES:-105}
VOCODER_STAGE2_MINUTES=${VOCODER_STAGE2_MINUTES:-95}
TOKEN_PRIOR_STEPS=${TOKEN_PRIOR_STEPS:-11000}
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
wait "$vocoder"

$PY train_vocoder.py --config configs/vocoder/piano_cpu.yaml --data data/cache --out runs/vocoder-ft \
  --set init_from=runs/vocoder/best --set train.max_minutes="$VOCODER_STAGE2_MINUTES" --resume \
  > runs-vocoder-ft.log 2>&1 &
vocoder=$!

# The token prior (the bundled default since 2026-12-01): all 500 performances (35.1 h of training
# audio, the official splits), from random weights on one thread; the shipped run trained 60
# minutes, then on with `--resume --set train.max_minutes=125` and `=200` (176 minutes in all),
# and was exported at its best validation, the step below.
if [ -d "$MIDI_DIR" ]; then
  $PY tools/make_demo_dataset.py --midi-dir "$MIDI_DIR" --metadata "$METADATA" --workers 1 --out data/demo-all
  .venv/bin/audiogen-prepare --maestro data/demo-all --out data/cache-all --workers 1
  prior_data=data/cache-all
  prior_audio=data/demo-all
else
  prior_data=data/cache
  prior_audio=data/demo
fi
$PY train_spec.py --config configs/spec/piano_cpu_token_prior.yaml --data "$prior_data" --out runs/token-prior \
  --set vae_dir=runs/vae/best --max-steps "$TOKEN_PRIOR_STEPS" --resume
wait "$vocoder"

for name in spec vocoder; do  # keep the model cards; replace the weights, config and provenance
  mkdir -p "audiogen/pretrained/$name"
  find "audiogen/pretrained/$name" -maxdepth 1 -type f ! -name MODEL_CARD.md -delete
done
cp runs/token-prior/best/* audiogen/pretrained/spec/
cp runs/vocoder-ft/best/* audiogen/pretrained/vocoder/
# the band the prior's surprise is kept in while sampling: its own, on real validation music
$PY tools/surprise_band.py --data "$prior_data" --split validation --write
# how hard the log-mel of what the prior draws is sharpened: chosen on real validation music
$PY tools/mel_sharpening.py --reference "$prior_audio" --split validation --num 100 --seed 1000 --write
.venv/bin/audiogen export-onnx --cache --force  # the graphs generate runs on onnxruntime (not shipped)
echo "bundled models updated; write their figures into audiogen/pretrained/*/MODEL_CARD.md"
