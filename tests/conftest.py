"""Test-wide settings: must run before jax is imported anywhere."""

import os

import avips_jax  # noqa: F401  (sets the XLA:CPU flags that avoid deadlocks before jax starts)

os.environ.setdefault("MPLBACKEND", "Agg")
