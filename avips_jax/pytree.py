"""Small pytree helpers."""

import chex
import jax
import jax.numpy as jnp


def select(cond: chex.Array, new, old):
    """`new` where the scalar bool `cond` holds, else `old`, leaf by leaf (jit-friendly)."""
    return jax.tree.map(lambda n, o: jnp.where(cond, n, o), new, old)


def all_finite(tree) -> chex.Array:
    """() bool: every leaf of `tree` is finite."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))
