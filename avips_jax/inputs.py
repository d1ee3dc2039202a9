"""Shape checks shared by every model's public sample/log_prob (aVIPS GMM, flow, GAN)."""

import chex
import jax
import jax.numpy as jnp


def check_contexts(contexts: chex.Array, context_dim: int) -> jax.Array:
    """contexts as a float array of shape (T, d_c); ValueError naming the shape otherwise."""
    contexts = jnp.asarray(contexts)
    if contexts.ndim != 2 or contexts.shape[-1] != context_dim:
        raise ValueError(f"contexts must have shape (T, {context_dim}), got {contexts.shape}")
    return contexts.astype(jnp.promote_types(contexts.dtype, jnp.float32))


def check_points(x: chex.Array, contexts: jax.Array, dim: int) -> jax.Array:
    """x (T, n, d) for checked contexts (T, d_c), in the contexts' dtype; ValueError otherwise."""
    x = jnp.asarray(x)
    if x.ndim != 3 or x.shape[0] != contexts.shape[0] or x.shape[-1] != dim:
        raise ValueError(f"x must have shape (T={contexts.shape[0]}, n, d={dim}), got {x.shape}")
    return x.astype(contexts.dtype)
