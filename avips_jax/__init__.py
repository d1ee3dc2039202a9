"""avips_jax: amortized variational inference by policy search for diverse inverse kinematics."""

import os as _os

# XLA:CPU has deadlocked here (process idle forever) on jitted batches of small linear-algebra
# solves: with multi-threaded Eigen, and, in this code's train step, with the concurrency-
# optimised scheduler. Both flags only affect the CPU backend. They apply when avips_jax is
# imported before jax initialises its backends; set AVIPS_JAX_KEEP_XLA_FLAGS=1 to opt out.
_CPU_SAFE_XLA_FLAGS = (
    "--xla_cpu_multi_thread_eigen=false",
    "--xla_cpu_enable_concurrency_optimized_scheduler=false",
)
if not _os.environ.get("AVIPS_JAX_KEEP_XLA_FLAGS"):
    _flags = _os.environ.get("XLA_FLAGS", "")
    _missing = [f for f in _CPU_SAFE_XLA_FLAGS if f.split("=")[0] not in _flags]
    if _missing:
        _os.environ["XLA_FLAGS"] = " ".join([_flags, *_missing]).strip()

__version__ = "0.1.0"


def __getattr__(name: str):
    # `avips_jax.IKSolver` without importing jax/flax at `import avips_jax` time (the XLA flags
    # above must be set before jax initialises).
    if name == "IKSolver":
        from avips_jax.solver import IKSolver

        return IKSolver
    raise AttributeError(f"module 'avips_jax' has no attribute {name!r}")
