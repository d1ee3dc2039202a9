#!/usr/bin/env bash
# Trains and evaluates the pretrained Panda model that ships in avips_jax/pretrained/panda/ and that
# `avips_jax.IKSolver.pretrained("panda")` loads. Keeps only the final checkpoint (~2 MB), the
# resolved config and the evaluation's metrics.json.
# Usage: bash scripts/make_pretrained.sh             (WORKDIR=runs/pretrained_panda by default)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
WORKDIR="${WORKDIR:-runs/pretrained_panda}"
DEST=avips_jax/pretrained/panda
CONFIG="experiments/configs/panda.py:quick"
STEPS=30000
START=$(date +%s)
.venv/bin/python -m experiments.train --config="$CONFIG" --config.train.num_steps="$STEPS" \
  --workdir="$WORKDIR" --noprogress
.venv/bin/python -m experiments.evaluate --workdir="$WORKDIR"
STEP=$(ls "$WORKDIR/checkpoints" | sort -n | tail -1)
rm -rf "$DEST/checkpoints" "$DEST/config.json" "$DEST/metrics.json"
mkdir -p "$DEST/checkpoints"
cp -r "$WORKDIR/checkpoints/$STEP" "$DEST/checkpoints/$STEP"
cp "$WORKDIR/config.json" "$WORKDIR/metrics.json" "$DEST/"
cat > "$DEST/README.md" <<MD
# Pretrained Panda model (position contexts, σ_pos = 1 cm)

Produced by \`bash scripts/make_pretrained.sh\` on $(date -u +%Y-%m-%d), $(nproc) CPU cores
($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), in $(( $(date +%s) - START )) s:

    python -m experiments.train --config=$CONFIG --config.train.num_steps=$STEPS --workdir=$WORKDIR
    python -m experiments.evaluate --workdir=$WORKDIR

Files: \`config.json\` (the resolved config), \`checkpoints/$STEP/\` (the final orbax checkpoint),
\`metrics.json\` (the evaluation on the fixed test set). Load it with
\`avips_jax.IKSolver.pretrained("panda")\`.
MD
du -sh "$DEST"
