"""Test-wide settings: must run before jax is imported anywhere."""

import os

# XLA:CPU's multi-threaded Eigen has deadlocked on jitted batches of small solves on 2-core hosts.
_NO_EIGEN_THREADS = "--xla_cpu_multi_thread_eigen=false"
if _NO_EIGEN_THREADS not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_NO_EIGEN_THREADS}"
os.environ.setdefault("MPLBACKEND", "Agg")
