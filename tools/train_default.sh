#!/usr/bin/env bash
# Rebuild the bundled default models from scratch on this kind of machine (2 CPU cores), the way
# the shipped ones were made: render the demo set, prepare the cache, train the vocoder and the
# spectrogram VAE/GAN side by side (one core each), then the latent prior on the VAE, and copy
# the best exports into audiogen/pretrained/. Each stage has the wall-time budget the shipped
# models had (train.max_minutes; their model cards, audiogen/pretrained/*/MODEL_CARD.md, give the
# exact steps); set VOCODER_MINUTES, VAE_MINUTES, PRIOR_MINUTES to train longer.
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

rm -rf audiogen/pretrained/spec audiogen/pretrained/vocoder
mkdir -p audiogen/pretrained
cp -r runs/prior/best audiogen/pretrained/spec
cp -r runs/vocoder/best audiogen/pretrained/vocoder
echo "bundled models updated; write their figures into audiogen/pretrained/*/MODEL_CARD.md"
