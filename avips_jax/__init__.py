"""avips_jax: amortized variational inference by policy search for diverse inverse kinematics."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `avips_jax.IKSolver` without importing jax/flax at `import avips_jax` time: the import stays
    # cheap, and a script can still call `avips_jax.runtime.set_cpu_safety_flags()` before jax
    # starts.
    if name == "IKSolver":
        from avips_jax.solver import IKSolver

        return IKSolver
    raise AttributeError(f"module 'avips_jax' has no attribute {name!r}")
