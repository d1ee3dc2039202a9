"""Process settings that have to be made before JAX starts its backends: the XLA:CPU safety flags.

    from avips_jax import runtime
    runtime.set_cpu_safety_flags()   # first thing in a main, before any computation

XLA:CPU has deadlocked here (process idle forever) on jitted batches of small linear-algebra
solves: with multi-threaded Eigen and, in this code's train step, with the concurrency-optimised
scheduler. Both flags only affect the CPU backend, and only when set before JAX initialises its
backends (at the first computation, not at `import jax`). Importing avips_jax changes nothing;
the entry points (experiments, benchmarks, `avips_jax.solve`) and the tests call this.
"""

import logging
import os
from collections.abc import MutableMapping

CPU_SAFETY_FLAGS = (
    "--xla_cpu_multi_thread_eigen=false",
    "--xla_cpu_enable_concurrency_optimized_scheduler=false",
)


def with_cpu_safety_flags(xla_flags: str | None) -> str:
    """`xla_flags` with every flag of CPU_SAFETY_FLAGS whose name it does not set appended (a
    value the user chose for one of them is kept)."""
    flags = (xla_flags or "").strip()
    missing = [f for f in CPU_SAFETY_FLAGS if f.split("=")[0] not in flags]
    return " ".join([flags, *missing]).strip()


def set_cpu_safety_flags(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Adds the missing CPU_SAFETY_FLAGS to environ["XLA_FLAGS"]; returns whether it changed.

    Logs a warning when JAX's backends are already running, since the flags then only apply to
    processes started from here.
    """
    flags = with_cpu_safety_flags(environ.get("XLA_FLAGS"))
    if flags == environ.get("XLA_FLAGS", "").strip():
        return False
    environ["XLA_FLAGS"] = flags
    if _backends_started():
        logging.getLogger(__name__).warning(
            "XLA:CPU safety flags set after JAX started its backends: they apply to child "
            "processes only; call runtime.set_cpu_safety_flags() before the first computation."
        )
    return True


def _backends_started() -> bool:
    import sys

    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge  # no public API tells whether the backends started

    return xla_bridge.backends_are_initialized()
