#!/usr/bin/env bash
# The objects model's ablations at one budget: each preset (configs/experiment/objects_*.yaml) trains the diffusion
# stage for STEPS steps on the full run's schedule (optim.decay_steps = the full run's trainer.max_steps), with the
# committed model's frozen autoencoder and tower, so each is compared with the full run's checkpoint at the same step
# (`python -m pbe.report objects-ablation`).
#   bash bench/objects_ablations.sh DATA_DIR [STEPS] [OUT]
# One run after another (two cores: never two trainings at once); a finished run is skipped, a killed one resumes.
set -euo pipefail
data=${1:?usage: bash bench/objects_ablations.sh DATA_DIR [STEPS] [OUT]}
steps=${2:-2000}
out=${3:-outputs/objects_ablations}
py=${PYTHON:-.venv/bin/python}
for name in objects_same_style objects_no_bottleneck objects_no_exemplar_aug objects_rect_mask; do
  run="$out/$name"
  if [ -f "$run/model/model.safetensors" ]; then echo "$name: done ($run)"; continue; fi
  echo "$name: $steps steps -> $run"
  "$py" train.py experiment="$name" data.source.root="$data" run_dir="$run" \
    trainer.max_steps="$steps" optim.decay_steps=7500
done
