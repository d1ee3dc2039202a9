"""Sampling importance resampling (SIR) in log space, batched over contexts.

Candidates x_i ~ q(.|c) (N per context) are weighted by w_i ∝ p(x_i|c) / q(x_i|c), self-normalised
per context, and m of them are resampled by those weights (docs/math.md §5).
Axis 0 indexes candidates (N) or resampled points (m), axis 1 contexts (B).

Invalid candidates: a candidate whose log-weight log p - log q is not finite (NaN or -inf log p,
NaN or -inf log q, +inf anywhere) gets weight exactly 0. A context without any valid candidate has
all log-weights -inf (no NaN), an effective sample size of 0, and is resampled uniformly so that
shapes stay static; callers detect it by `ess == 0`.

Weights are meant for estimates under `jax.lax.stop_gradient`, but their gradients are finite
(masked with double `where`). Nothing here calls `jax.jit`; every function is jit-able with `m`
and `method` static.
"""

import chex
import flax
import jax
import jax.numpy as jnp

METHODS = ("multinomial", "systematic")


@flax.struct.dataclass
class SIRResult:
    """Output of `sir`.

    Attributes:
      samples: resampled points, (m, B, d).
      log_p: target log-density of the resampled points, (m, B); NaN entries reported as -inf.
      indices: candidate index of each resampled point, (m, B) int32.
      ess: effective sample size of the candidate weights per context, (B,), in [0, N].
      log_w: self-normalised candidate log-weights, (N, B).
    """

    samples: chex.Array
    log_p: chex.Array
    indices: chex.Array
    ess: chex.Array
    log_w: chex.Array


def _check_rank2(name: str, a: chex.Array) -> None:
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (N, B), got {a.shape}")


def log_importance_weights(log_p: chex.Array, log_q: chex.Array) -> chex.Array:
    """Self-normalised log importance weights log w_i = log p_i - log q_i - log sum_j exp(...).

    Args:
      log_p: target log-densities of the candidates, (N, B).
      log_q: proposal log-densities of the same candidates, (N, B).

    Returns:
      log-weights (N, B) with logsumexp over axis 0 equal to 0 in every context that has a valid
      candidate; invalid candidates get -inf, and a context with none is all -inf.

    Raises:
      ValueError: if the shapes differ or are not (N, B).
    """
    log_p, log_q = jnp.asarray(log_p), jnp.asarray(log_q)
    _check_rank2("log_p", log_p)
    if log_q.shape != log_p.shape:
        raise ValueError(f"log_q shape {log_q.shape} differs from log_p shape {log_p.shape}")
    raw = log_p - log_q
    valid = jnp.isfinite(raw)
    any_valid = jnp.any(valid, axis=0)
    safe = jnp.where(valid, raw, 0.0)
    shift = jax.lax.stop_gradient(jnp.max(jnp.where(valid, raw, -jnp.inf), axis=0))
    shift = jnp.where(any_valid, shift, 0.0)
    centred = safe - shift  # exact for nearby values; keeps float32 precision at large |raw|
    total = jnp.sum(jnp.where(valid, jnp.exp(centred), 0.0), axis=0)
    return jnp.where(valid, centred - jnp.log(jnp.where(any_valid, total, 1.0)), -jnp.inf)


def effective_sample_size(log_w: chex.Array) -> chex.Array:
    """Kish's effective sample size (sum w)^2 / sum w^2 per context (= 1 / sum w^2 if normalised).

    Args:
      log_w: log-weights (N, B), normalised or not; -inf and NaN entries count as weight 0.

    Returns:
      ESS (B,) in [1, N] for a context with a positive weight, 0 for a context without one.
    """
    log_w = jnp.asarray(log_w)
    _check_rank2("log_w", log_w)
    valid = jnp.isfinite(log_w)
    shift = jnp.max(jnp.where(valid, log_w, -jnp.inf), axis=0)
    shift = jax.lax.stop_gradient(jnp.where(jnp.isfinite(shift), shift, 0.0))
    w = jnp.where(valid, jnp.exp(jnp.where(valid, log_w, 0.0) - shift), 0.0)
    s1, s2 = jnp.sum(w, axis=0), jnp.sum(w**2, axis=0)
    return jnp.where(s2 > 0, s1**2 / jnp.where(s2 > 0, s2, 1.0), 0.0)


def _resampling_logits(log_w: chex.Array) -> chex.Array:
    """Invalid entries -> -inf; a context with no valid entry -> uniform (all 0)."""
    valid = jnp.isfinite(log_w)
    logits = jnp.where(valid, log_w, -jnp.inf)
    return jnp.where(jnp.any(valid, axis=0, keepdims=True), logits, 0.0)


def _systematic_indices(key: chex.PRNGKey, logits: chex.Array, m: int) -> chex.Array:
    """Systematic resampling: one uniform U per context, points u_k = (U + k) / m."""
    num, num_ctx = logits.shape
    w = jax.nn.softmax(logits, axis=0)
    cdf = jnp.cumsum(w, axis=0)
    cdf = cdf / cdf[-1:]
    u = (jax.random.uniform(key, (num_ctx,), w.dtype) + jnp.arange(m, dtype=w.dtype)[:, None]) / m
    idx = jax.vmap(lambda c, v: jnp.searchsorted(c, v, side="right"), in_axes=1, out_axes=1)(cdf, u)
    # Rounding can put u at or above the last cdf value: fall back to the last positive weight.
    last = num - 1 - jnp.argmax(jnp.flip(w > 0, axis=0), axis=0)
    return jnp.minimum(idx, last[None, :]).astype(jnp.int32)


def resample(
    key: chex.PRNGKey, x: chex.Array, log_w: chex.Array, m: int, method: str = "multinomial"
) -> tuple[chex.Array, chex.Array]:
    """Draws m of the N candidates per context with probabilities exp(log_w).

    Args:
      key: PRNG key.
      x: candidates, (N, B, ...) (usually (N, B, d)).
      log_w: log-weights (N, B), need not be normalised; non-finite entries get probability 0 and
        a context without a finite entry is resampled uniformly.
      m: number of points per context (static).
      method: "multinomial" (i.i.d. draws) or "systematic" (one stratified uniform per context:
        lower variance, each count within 1 of m w_i; indices come out sorted).

    Returns:
      (samples (m, B, ...), indices (m, B) int32).

    Raises:
      ValueError: for mismatched shapes, m < 1 or an unknown method.
    """
    x, log_w = jnp.asarray(x), jnp.asarray(log_w)
    _check_rank2("log_w", log_w)
    if x.shape[:2] != log_w.shape:
        raise ValueError(f"x shape {x.shape} must start with log_w shape {log_w.shape}")
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    logits = _resampling_logits(log_w)
    if method == "multinomial":
        idx = jax.random.categorical(key, logits.T, axis=-1, shape=(m, log_w.shape[1]))
    elif method == "systematic":
        idx = _systematic_indices(key, logits, m)
    else:
        raise ValueError(f"unknown resampling method {method!r}; choose from {METHODS}")
    idx = idx.astype(jnp.int32)
    return x[idx, jnp.arange(log_w.shape[1])[None, :]], idx


def sir(
    key: chex.PRNGKey,
    x: chex.Array,
    log_p: chex.Array,
    log_q: chex.Array,
    m: int,
    method: str = "multinomial",
) -> SIRResult:
    """Weights N candidates per context by p / q and resamples m of them.

    Args:
      key: PRNG key.
      x: candidates drawn from q, (N, B, d).
      log_p: target log-densities, (N, B).
      log_q: proposal log-densities, (N, B).
      m: number of resampled points per context (static).
      method: see `resample`.

    Returns:
      An `SIRResult`.
    """
    log_w = log_importance_weights(log_p, log_q)
    samples, idx = resample(key, x, log_w, m, method)
    log_p_sel = jnp.take_along_axis(jnp.asarray(log_p), idx, axis=0)
    log_p_sel = jnp.where(jnp.isnan(log_p_sel), -jnp.inf, log_p_sel)
    return SIRResult(
        samples=samples,
        log_p=log_p_sel,
        indices=idx,
        ess=effective_sample_size(log_w),
        log_w=log_w,
    )
