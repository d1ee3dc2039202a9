"""avips_jax: amortized variational inference by policy search for diverse inverse kinematics."""

__version__ = "0.1.0"
