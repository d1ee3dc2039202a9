#!/usr/bin/env bash
# Executes notebooks from a clean kernel and writes them back with their outputs (the committed
# notebooks keep their outputs so that the pictures show on the repository page).
# Usage: bash scripts/run_notebook.sh [notebook.ipynb ...]   (default: notebooks/quickstart.ipynb)
#
# `jupyter-execute --inplace` would also work, but it keeps every redraw of the progress bar
# (no stream coalescing) and writes per-cell timing metadata; this uses nbclient directly.
set -euo pipefail
cd "$(dirname "$0")/.."
# XLA:CPU has deadlocked on batched small solves here (see avips_jax/runtime.py); the kernel
# inherits this environment.
export XLA_FLAGS="${XLA_FLAGS:-} --xla_cpu_multi_thread_eigen=false --xla_cpu_enable_concurrency_optimized_scheduler=false"
export MPLBACKEND=Agg
[ "$#" -gt 0 ] || set -- notebooks/quickstart.ipynb
.venv/bin/python - "$@" <<'PY'
import pathlib
import sys
import time

import nbformat
from nbclient import NotebookClient

for path in map(pathlib.Path, sys.argv[1:]):
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(
        nb,
        kernel_name="python3",
        timeout=600,  # per cell, seconds
        coalesce_streams=True,  # one stream output per cell; progress-bar redraws collapsed
        record_timing=False,
        resources={"metadata": {"path": str(path.parent.resolve())}},  # cwd = the notebook's folder
    ).execute()
    nbformat.write(nb, path)
    print(f"{path}: executed in {time.perf_counter() - start:.0f} s")
PY
