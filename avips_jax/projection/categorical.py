"""KL trust-region projection of categorical weights (the mixture weights of aVIPS).

w* ∝ w^{1/(1+eta)} w_o^{eta/(1+eta)} with KL(w* || w_o) = eps_w: the same root finder on log eta
and implicit gradients (`dual`) as the covariance projection; identity inside the bound.
"""

import chex
import jax
import jax.numpy as jnp

from avips_jax.projection import dual, kl


def _interpolated_log_probs(eta, log_p, log_q, mask):
    """log of w* ∝ p^{1/(1+eta)} q^{eta/(1+eta)} over the active entries (0 elsewhere)."""
    mixed = (log_p + eta[..., None] * log_q) / (1.0 + eta[..., None])
    return kl.masked_log_softmax(mixed, mask)


def _cat_constraint(eta, log_p, consts, active):
    """KL(w*(eta) || w_o) (differentiable; inactive rows are evaluated on w = w_o)."""
    log_q, mask = consts
    log_p = jnp.where(active[..., None], log_p, log_q)
    log_w = _interpolated_log_probs(eta, log_p, log_q, mask)
    return jnp.sum(jnp.where(mask, jnp.exp(log_w) * (log_w - log_q), 0.0), axis=-1)


def _solve_cat_eta(log_p, consts, eps):
    """Dual variable eta >= 0 of the categorical projection (0 where the bound is inactive)."""
    log_q, mask = consts
    kl0 = jnp.sum(jnp.where(mask, jnp.exp(log_p) * (log_p - log_q), 0.0), axis=-1)
    active = kl0 > eps
    log_p = jnp.where(active[..., None], log_p, log_q)
    # KL(w*(eta) || q) <= R / (1 + eta) with R the range of log p - log q: eta_hi gives <= eps/2.
    fin = jnp.finfo(log_p.dtype)
    delta = log_p - log_q
    spread = jnp.max(jnp.where(mask, delta, -jnp.inf), -1) - jnp.min(
        jnp.where(mask, delta, jnp.inf), -1
    )
    eps_pos = jnp.maximum(eps, fin.tiny**0.5)
    eta_hi = jnp.minimum(jnp.maximum(2.0 * spread / eps_pos, 1.0), dual.eta_cap(fin))
    solve = lambda e: _cat_constraint(e, log_p, consts, active)
    eta = dual.find_eta(solve, eps, eta_hi)
    return jnp.where(active, jnp.maximum(eta, fin.tiny), 0.0)


def _check_categorical_shapes(logits, old_logits, mask, eps) -> tuple[int, ...]:
    """Validates the shapes of `project_categorical`'s inputs; returns the batch shape."""
    if logits.ndim < 1 or old_logits.ndim < 1 or logits.shape[-1] != old_logits.shape[-1]:
        raise ValueError(
            f"project_categorical: logits {logits.shape} and old_logits {old_logits.shape} must "
            "have shape (..., K) with the same K"
        )
    if mask.ndim < 1 or mask.shape[-1] != logits.shape[-1]:
        raise ValueError(
            f"project_categorical: mask {mask.shape} must be (..., K), K = {logits.shape[-1]}"
        )
    shapes = {"logits": logits.shape, "old_logits": old_logits.shape, "mask": mask.shape}
    shapes = {name: shape[:-1] for name, shape in shapes.items()}
    return dual.batch_shape("project_categorical", {**shapes, "eps": jnp.shape(eps)})


def project_categorical(
    logits: chex.Array,
    old_logits: chex.Array,
    eps: chex.Array,
    *,
    mask: chex.Array | None = None,
) -> chex.Array:
    """KL trust-region projection of categorical weights: KL(w* || w_o) <= eps.

    w* ∝ w^{1/(1+eta)} w_o^{eta/(1+eta)} with eta the root of KL(w* || w_o) = eps (the same root
    finder on log eta and implicit gradients as the covariance); identity inside the bound.
    old_logits are constants (stop-gradient); gradients flow to logits and eps.

    Args:
        logits: (..., K) predicted logits (finite on active entries).
        old_logits: (..., K) old logits (finite on active entries), broadcast-compatible.
        eps: bound (nats), scalar or broadcastable to the batch shape.
        mask: optional bool (..., K) or (K,) of active entries; inactive entries are ignored and
            passed through unchanged (e.g. they keep -inf). Default: all active.

    Returns:
        (..., K): `logits` unchanged where KL(w || w_o) <= eps; else the normalised log-weights of
        w* on the active entries (inactive entries unchanged).

    Raises:
        ValueError: if logits, old_logits and mask differ in K or have incompatible batch shapes.
    """
    logits, old_logits = jnp.asarray(logits), jnp.asarray(old_logits)
    mask = jnp.ones(logits.shape[-1:], bool) if mask is None else jnp.asarray(mask, bool)
    batch = _check_categorical_shapes(logits, old_logits, mask, eps)
    out_dtype = jnp.result_type(logits, old_logits, jnp.float32)
    dtype = dual.compute_dtype(logits, old_logits)
    shape = batch + logits.shape[-1:]
    logits = jnp.broadcast_to(logits.astype(out_dtype), shape)
    mask = jnp.broadcast_to(mask, shape)
    log_p = kl.masked_log_softmax(logits.astype(dtype), mask)
    log_q = jax.lax.stop_gradient(
        kl.masked_log_softmax(jnp.broadcast_to(old_logits, shape).astype(dtype), mask)
    )
    eps = jnp.broadcast_to(jnp.maximum(jnp.asarray(eps, dtype), 0.0), batch)
    eta = dual.implicit_eta(_solve_cat_eta, _cat_constraint, log_p, (log_q, mask), eps)
    projected = _interpolated_log_probs(eta, log_p, log_q, mask).astype(out_dtype)
    return jnp.where((eta > 0)[..., None] & mask, projected, logits)
