"""Test-wide settings: must run before jax is imported anywhere."""

import os

# XLA:CPU's multi-threaded Eigen has deadlocked on jitted batches of small solves on 2-core hosts.
if "--xla_cpu_multi_thread_eigen=false" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
os.environ.setdefault("MPLBACKEND", "Agg")
