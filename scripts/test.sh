#!/usr/bin/env bash
# Sets up .venv, lints, and runs the default (fast) test suite. Extra args go to pytest,
# e.g. `bash scripts/test.sh -m slow` for the long tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# XLA:CPU's multi-threaded Eigen has deadlocked on batched small solves on 2-core machines.
export XLA_FLAGS="${XLA_FLAGS:-} --xla_cpu_multi_thread_eigen=false"
export MPLBACKEND=Agg
.venv/bin/ruff check .
.venv/bin/ruff format --check .
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "ERROR: pytest collected no tests; refusing to pass." >&2
  exit 1
fi
exit "$rc"
