"""Test-wide settings: must run before jax is imported anywhere."""

import os

import pytest

from avips_jax import runtime

runtime.set_cpu_safety_flags()  # the XLA:CPU flags that avoid deadlocks, before jax starts

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="module")
def fast_compiles():
    """XLA compile time dominates small tests: disable most optimisations for one module, then
    restore the setting (use with `pytestmark = pytest.mark.usefixtures("fast_compiles")`)."""
    import jax

    old = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", old)


@pytest.fixture
def x64():
    """Runs the test with float64 enabled (`jax.enable_x64`), then restores the setting."""
    import jax

    with jax.enable_x64(True):
        yield
