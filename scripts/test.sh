#!/usr/bin/env bash
# Sets up .venv, lints, and runs the default (fast) test suite on PYTEST_WORKERS processes
# (pytest-xdist; default 2, the CI machine's cores). Extra args go to pytest, e.g.
# `bash scripts/test.sh -m slow` for the long tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# XLA:CPU has deadlocked on batched small solves here (see avips_jax/runtime.py).
export XLA_FLAGS="${XLA_FLAGS:-} --xla_cpu_multi_thread_eigen=false --xla_cpu_enable_concurrency_optimized_scheduler=false"
export MPLBACKEND=Agg
# Many tests build the same jitted programs (each fit.build makes a new train-step closure, and
# the CLI tests start new processes): a compilation cache shared by the workers of this run
# compiles each once. Fresh per run (never a stale cache), removed on exit.
if [ -z "${JAX_COMPILATION_CACHE_DIR:-}" ]; then
  JAX_COMPILATION_CACHE_DIR="$(mktemp -d -t avips_jax_test_cache.XXXXXX)"
  trap 'rm -rf "$JAX_COMPILATION_CACHE_DIR"' EXIT
fi
export JAX_COMPILATION_CACHE_DIR
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0.2}"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
set +e
.venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "ERROR: pytest collected no tests; refusing to pass." >&2
  exit 1
fi
exit "$rc"
