"""KL divergences between Gaussians (split into mean and covariance parts) and categoricals.

The quantities the projections bound and the regression loss uses; differentiable, batched over
any leading axes, Cholesky-parameterised (triangular solves, no explicit inverse).
"""

import chex
import jax
import jax.numpy as jnp

from avips_jax import linalg


def mean_kl_part(mean: chex.Array, old_mean: chex.Array, old_chol: chex.Array) -> chex.Array:
    """Mean part of KL(N(mean, .) || N(old_mean, old_chol old_chol^T)).

    m = 1/2 (mean - old_mean)^T Sigma_o^{-1} (mean - old_mean), by a triangular solve.

    Args:
        mean: (..., d).
        old_mean: (..., d), broadcast-compatible with `mean`.
        old_chol: (..., d, d) lower-triangular factor of the old covariance (positive diagonal).

    Returns:
        (...) the mean part in nats.
    """
    diff = jnp.broadcast_to(mean - old_mean, jnp.broadcast_shapes(mean.shape, old_chol.shape[:-1]))
    old_chol = jnp.broadcast_to(old_chol, diff.shape + diff.shape[-1:])
    white = linalg.solve_lower(old_chol, diff[..., None])[..., 0]
    return 0.5 * jnp.sum(white**2, axis=-1)


def cov_kl_part(chol: chex.Array, old_chol: chex.Array) -> chex.Array:
    """Covariance part of KL(N(., L L^T) || N(., L_o L_o^T)).

    s = 1/2 [||L_o^{-1} L||_F^2 - d + 2 sum log diag L_o - 2 sum log diag L].

    Args:
        chol: (..., d, d) lower-triangular factor L (nonzero diagonal).
        old_chol: (..., d, d) lower-triangular factor L_o, broadcast-compatible.

    Returns:
        (...) the covariance part in nats.
    """
    shape = jnp.broadcast_shapes(chol.shape, old_chol.shape)
    chol, old_chol = jnp.broadcast_to(chol, shape), jnp.broadcast_to(old_chol, shape)
    white = linalg.solve_lower(old_chol, chol)
    diag = lambda mat: jnp.diagonal(mat, axis1=-2, axis2=-1)
    # |diag|: a factor with negative diagonal entries describes the same covariance.
    logdet_ratio = jnp.sum(jnp.log(jnp.abs(diag(old_chol) / diag(chol))), axis=-1)
    return 0.5 * (jnp.sum(white**2, axis=(-2, -1)) - shape[-1]) + logdet_ratio


def gaussian_kl(
    mean: chex.Array, chol: chex.Array, other_mean: chex.Array, other_chol: chex.Array
) -> chex.Array:
    """KL(N(mean, chol chol^T) || N(other_mean, other_chol other_chol^T)) = mean + cov parts.

    Args:
        mean: (..., d); chol: (..., d, d); other_mean: (..., d); other_chol: (..., d, d), all
            broadcast-compatible; Cholesky factors lower-triangular (nonzero diagonal).

    Returns:
        (...) the KL divergence in nats (differentiable in all four inputs).
    """
    return mean_kl_part(mean, other_mean, other_chol) + cov_kl_part(chol, other_chol)


def masked_log_softmax(logits: chex.Array, mask: chex.Array) -> chex.Array:
    """log-softmax over the entries where `mask`; 0 (finite, gradient-free) elsewhere.

    A row without any active entry gives all zeros (never NaN, not even in gradients).
    """
    safe = jnp.where(mask, logits, 0.0)
    masked = jnp.where(mask, safe, -jnp.inf)
    masked = jnp.where(jnp.any(mask, axis=-1, keepdims=True), masked, 0.0)
    log_norm = jax.nn.logsumexp(masked, axis=-1, keepdims=True)
    return jnp.where(mask, safe - log_norm, 0.0)


def categorical_kl(
    logits: chex.Array, other_logits: chex.Array, mask: chex.Array | None = None
) -> chex.Array:
    """KL(Cat(softmax(logits)) || Cat(softmax(other_logits))) over the active entries.

    Args:
        logits: (..., K) unnormalised log-weights.
        other_logits: (..., K), broadcast-compatible.
        mask: optional bool (..., K) or (K,) of active entries; inactive entries are ignored (their
            values may be anything, -inf included). Default: all active.

    Returns:
        (...) the KL divergence in nats.
    """
    if mask is None:
        mask = jnp.ones(logits.shape[-1:], bool)
    log_p = masked_log_softmax(logits, mask)
    log_q = masked_log_softmax(other_logits, mask)
    return jnp.sum(jnp.where(mask, jnp.exp(log_p) * (log_p - log_q), 0.0), axis=-1)
