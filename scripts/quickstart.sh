#!/usr/bin/env bash
# The main job: set up, train the Panda `quick` preset on CPU, evaluate it, print the metrics table
# and the plot paths, and keep the table in results/panda_quick.md.
# Usage: bash scripts/quickstart.sh            (WORKDIR=runs/panda_quick by default)
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
bash scripts/setup_env.sh
WORKDIR="${WORKDIR:-runs/panda_quick}"
.venv/bin/python -m experiments.train --config=experiments/configs/panda.py:quick \
  --workdir="$WORKDIR" --noprogress
mkdir -p results
{
  echo "# Panda quick preset: the README's main job (scripts/quickstart.sh)"
  echo
  echo "Written by \`bash scripts/quickstart.sh\` on $(date -u +%Y-%m-%d), $(nproc) CPU cores"
  echo "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); run directory \`$WORKDIR\`."
  echo
  .venv/bin/python -m experiments.evaluate --workdir="$WORKDIR" 2>/dev/null
  echo
  echo "Whole job (setup, training, evaluation): $(( $(date +%s) - START )) s wall."
} | tee results/panda_quick.md
