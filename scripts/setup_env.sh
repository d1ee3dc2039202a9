#!/usr/bin/env bash
# Creates .venv (Python 3.11) and installs avips_jax with its dev tools, pinned by constraints.txt.
# Usage: bash scripts/setup_env.sh            (CPU jax; add EXTRAS=dev,cuda for a GPU machine)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] >= (3, 11), f"avips_jax needs Python >= 3.11, got {sys.version}"'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[${EXTRAS:-dev}]"
