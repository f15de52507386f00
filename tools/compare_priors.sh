#!/usr/bin/env bash
# Same-data, same-wall-time comparison of latent prior families (docs/priors.md): the mixture
# prior (configs/spec/piano_cpu_prior.yaml), the transformer flow prior
# (configs/spec/piano_cpu_flow_prior.yaml) and the token prior (configs/spec/piano_cpu_token_prior.yaml)
# train side by side (FAMILIES, default all three), one CPU thread each, for MINUTES
# of wall time from random weights on the latents of the same VAE; then tools/fad_benchmark.py
# scores each best export on the VALIDATION split (model choice; the test split is for the
# report of the winner): FAD (mel embedding) of 10 s clips, music descriptors, and the long-form
# mode (60 s clips in 10 s windows, with the wash detector).
#
#   bash tools/compare_priors.sh [CACHE] [DEMO_DIR] [VAE_DIR] [MINUTES]
#
# Defaults: data/cache, data/demo (the rendered set the cache was made from: the benchmark reads
# its audio), the bundled VAE (audiogen/pretrained/spec), 60 minutes. Runs go to runs/compare-*.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${1:-data/cache}
DEMO=${2:-data/demo}
VAE=${3:-audiogen/pretrained/spec}
MINUTES=${4:-60}
PY=.venv/bin/python
FAMILIES=${FAMILIES:-prior flow_prior token_prior}
export OMP_NUM_THREADS=1

pids=()
for family in $FAMILIES; do
  $PY train_spec.py --config "configs/spec/piano_cpu_$family.yaml" --data "$CACHE" --out "runs/compare-$family" \
    --set vae_dir="$VAE" --set train.max_minutes="$MINUTES" --resume > "runs/compare-$family.log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"

pids=()
for family in $FAMILIES; do
  $PY tools/fad_benchmark.py --reference "$DEMO" --split validation --embedding mel --num 100 --seconds 10 \
    --long-seconds 60 --long-num 24 --model "runs/compare-$family/best" --out "runs/compare-$family/fad-validation" \
    > "runs/compare-$family/fad-validation.log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
for family in $FAMILIES; do
  echo "== $family"; cat "runs/compare-$family/fad-validation/fad_benchmark.md"
done
