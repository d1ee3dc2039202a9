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


@jax.jit
def _finite_flags(leaves: list) -> list:
    return [jnp.all(jnp.isfinite(x)) for x in leaves]


def nonfinite_paths(tree) -> list[str]:
    """Paths (`jax.tree_util.keystr`) of the floating-point leaves of `tree` that hold a NaN or an
    infinity, in tree order; [] when every value is finite. One jitted reduction, one transfer."""
    flat = [
        (path, x)
        for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
        if jnp.issubdtype(jnp.result_type(x), jnp.inexact)
    ]
    if not flat:
        return []
    flags = jax.device_get(_finite_flags([x for _, x in flat]))
    return [jax.tree_util.keystr(path) for (path, _), ok in zip(flat, flags, strict=True) if not ok]
