"""Differentiable KL trust-region projections of Gaussians and categorical distributions.

Given a prediction q (new network output) and an old distribution q_o (the detached output of the
previous parameters), return the distribution closest to q that lies inside a KL ball around q_o
(design.md §3.3, algorithm.md §4). Gaussians use the split projection of Otto et al. (2021):

* mean: closed form, mu* = mu_o + sqrt(eps_mu / m) (mu - mu_o) when the mean part
  m = 1/2 (mu - mu_o)^T Sigma_o^{-1} (mu - mu_o) exceeds eps_mu, else mu* = mu;
* covariance: Lambda*(eta) = (Lambda + eta Lambda_o) / (1 + eta) (precisions), with eta > 0 the
  root of s(Sigma*(eta), Sigma_o) = eps_Sigma, where s is the covariance part of the KL. The root is
  found inside `jax.lax` with a fixed number of steps (bisection on log(eta + c), then safeguarded
  Newton steps that never leave the bracket) on a bracket that is guaranteed by construction,
  never by a solver that can fail. Gradients come from the implicit function theorem through a
  `jax.custom_jvp` (forward and reverse mode), never from differentiating the root finder;
* weights: w* ∝ w^{1/(1+eta)} w_o^{eta/(1+eta)} with KL(w* || w_o) = eps_w, same machinery.

Numerics. Everything happens in the old frame: B = Q^T Q with Q = L^{-1} L_o is the predicted
precision whitened by the old covariance, and P(eta) = (B + eta I) / (1 + eta) the projected one.
B is reduced once to tridiagonal form (Householder); each root-finder step then evaluates the
constraint in O(d) from the LDL^T pivots of the tridiagonal matrix, as a sum of non-negative terms
(no cancellation near the bound). The projected factor is L* = L_o V^{-T} with V V^T = P(eta)
("upper" Cholesky). P(eta) has its eigenvalues inside the KL ball around 1, so it is well
conditioned even when Sigma and Sigma_o are not (condition numbers up to 1e8 are tested). Only
Cholesky factorisations, triangular solves and a Householder reduction are used (no explicit
inverse, no eigendecomposition), written in `jnp` rather than `jax.lax.linalg`: jaxlib's batched
LAPACK kernels can deadlock XLA:CPU (see the note on the linear-algebra helpers below).
Computations run in float64 when x64 is enabled (float32 inputs are promoted, results cast back),
else in float32. Measured on 1e5 random pairs (d = 7 and 34, condition numbers up to 1e8, bounds
1e-4..1): the projected KL parts match the bounds to ~1e-10 relative error in float64 and to
<= 5e-4 (median 1e-6) in float32, comparable to the error of merely rounding the exact float64
projection to float32; outputs and gradients are always finite.

Gradients. Old parameters (old_mean, old_chol, old_logits) are treated as constants: the old model
is detached in aVIPS (algorithm.md §1), so they pass through `jax.lax.stop_gradient` and receive
zero gradient. Gradients flow to the prediction (mean, chol, logits) and to the bounds eps.
"""

import math
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp

from avips_jax import linalg

# Offset c of the bisection variable w = log(eta + c): w = log(c) is eta = 0 exactly, so the bracket
# [0, eta_hi] is covered with linear resolution near 0 and logarithmic resolution for large eta.
_ETA_OFFSET = 1e-10
# Bisection steps, then safeguarded Newton steps, of the root finder (see `_find_eta`).
_NUM_BISECTION_STEPS = 16
_NUM_NEWTON_STEPS = 5
# On CPU, project_gaussian maps over batch chunks of about this many bytes of d x d matrices.
_CPU_CHUNK_BYTES = 1 << 19


# --------------------------------------------------------------------------------------------
# Small numerical helpers
# --------------------------------------------------------------------------------------------


def _compute_dtype(*arrays: chex.Array) -> jnp.dtype:
    """float64 when x64 is enabled, else the (floating) result type of the inputs."""
    if jax.dtypes.canonicalize_dtype(jnp.float64) == jnp.float64:
        return jnp.dtype(jnp.float64)
    return jnp.dtype(jnp.result_type(*arrays, jnp.float32))


def _x_minus_log1p(x: chex.Array) -> chex.Array:
    """x - log(1 + x) for x > -1, accurate near 0 (series) where the difference cancels."""
    small = jnp.abs(x) < 1e-2
    xs = jnp.where(small, x, 0.0)
    # x^2 (1/2 - x/3 + x^2/4 - ...), truncated after x^11 (error < 1e-20 relative for |x| < 1e-2).
    series = jnp.zeros_like(xs)
    for k in range(11, 1, -1):
        series = series * xs + (-1.0) ** k / k
    series = series * xs * xs
    xl = jnp.where(small, 1.0, x)
    return jnp.where(small, series, xl - jnp.log1p(xl))


def _diag(mat: chex.Array) -> chex.Array:
    return jnp.diagonal(mat, axis1=-2, axis2=-1)


def _positive_diag_tril(chol: chex.Array) -> chex.Array:
    """Lower triangle of `chol` with columns sign-flipped so that the diagonal is positive.

    L L^T is unchanged, so any lower-triangular factor is accepted; a zero diagonal stays zero.
    """
    chol = jnp.tril(chol)
    sign = jnp.where(_diag(chol) < 0, -1.0, 1.0).astype(chol.dtype)
    return chol * sign[..., None, :]


# Dense linear algebra without LAPACK (see avips_jax/linalg.py for why).
_take = linalg.take
_put = linalg.put
_solve_lower = linalg.solve_lower
_cholesky = linalg.cholesky
_flip2 = linalg._flip2
_forward_substitution = linalg.forward_substitution
_symmetrize = linalg.symmetrize


def _tridiagonalize(mat: chex.Array) -> tuple[chex.Array, chex.Array]:
    """Householder reduction of a symmetric (..., d, d) batch to tridiagonal form.

    Returns (diag (..., d), off (..., d - 1)).

    The tridiagonal matrix is orthogonally similar to `mat` (same eigenvalues); off-diagonal signs
    are arbitrary. Forward only (used inside the root finder, never differentiated).
    """
    d = mat.shape[-1]
    rows = jnp.arange(d)

    def body(k, a):
        x = jnp.where(rows > k, _take(a, k, -1), 0.0)  # column k below the diagonal
        head = _take(x, k + 1, -1)
        alpha = -jnp.where(head < 0, -1.0, 1.0) * jnp.sqrt(jnp.sum(x**2, axis=-1))  # H x = alpha e
        v = x - jnp.where(rows == k + 1, alpha[..., None], 0.0)
        vv = jnp.sum(v**2, axis=-1)
        tau = jnp.where(vv > 0, 2.0 / jnp.where(vv > 0, vv, 1.0), 0.0)  # x = 0: H = I
        p = tau[..., None] * jnp.einsum("...ij,...j->...i", a, v)
        w = p - (0.5 * tau * jnp.sum(v * p, axis=-1))[..., None] * v
        return a - v[..., :, None] * w[..., None, :] - w[..., :, None] * v[..., None, :]

    a = jax.lax.fori_loop(0, max(d - 2, 0), body, mat)
    return _diag(a), jnp.diagonal(a, offset=-1, axis1=-2, axis2=-1)


def _eta_cap(fin: jnp.finfo) -> float:
    """Largest eta the solvers consider: (1 + eta)^2 (in derivatives) must not overflow.

    About 1.8e17 in float32 (reached only when the prediction and the old distribution differ by
    a condition number beyond float32 resolution), 1e139 in float64.
    """
    return float(fin.max) ** 0.45


def _find_eta(
    constraint: Callable[[chex.Array], chex.Array],
    eps: chex.Array,
    eta_hi: chex.Array,
    num_bisection: int = _NUM_BISECTION_STEPS,
    num_newton: int = _NUM_NEWTON_STEPS,
) -> chex.Array:
    """Root of a decreasing `constraint(eta) = eps` on [0, eta_hi], elementwise.

    Works on w = log(eta + c) (w = log c is eta = 0): `num_bisection` bisection steps shrink the
    guaranteed bracket (constraint(0) > eps >= constraint(eta_hi)), then `num_newton` Newton steps
    on w, each safeguarded to stay inside the current bracket (else bisect), polish the root to
    machine precision. Fixed step counts: jit/vmap-friendly, never differentiated.
    """
    lo = jnp.full_like(eta_hi, jnp.log(_ETA_OFFSET))
    hi = jnp.log(eta_hi + _ETA_OFFSET)
    to_eta = lambda w: jnp.maximum(jnp.exp(w) - _ETA_OFFSET, 0.0)

    def bisect(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        too_far = constraint(to_eta(mid)) > eps
        return jnp.where(too_far, mid, lo), jnp.where(too_far, hi, mid)

    def newton(_, state):
        lo, hi, w = state
        value, slope = jax.jvp(lambda w: constraint(to_eta(w)), (w,), (jnp.ones_like(w),))
        too_far = value > eps
        lo, hi = jnp.where(too_far, w, lo), jnp.where(too_far, hi, w)
        step = w - (value - eps) / jnp.where(slope < 0, slope, -1.0)
        inside = (slope < 0) & (step >= lo) & (step <= hi)
        return lo, hi, jnp.where(inside, step, 0.5 * (lo + hi))

    lo, hi = jax.lax.fori_loop(0, num_bisection, bisect, (lo, hi))
    _, _, w = jax.lax.fori_loop(0, num_newton, newton, (lo, hi, 0.5 * (lo + hi)))
    return to_eta(w)


def _implicit_eta(
    solve: Callable[..., chex.Array],
    constraint: Callable[..., chex.Array],
    params: chex.ArrayTree,
    consts: chex.ArrayTree,
    eps: chex.Array,
) -> chex.Array:
    """eta = solve(params, consts, eps), differentiated implicitly through constraint = eps.

    `solve` returns eta = 0 where the bound is inactive and eta > 0 where
    constraint(eta, params, consts, active) == eps. Tangents follow the implicit function theorem,
    d eta = (d eps - d_theta constraint . d theta) / (d constraint / d eta), and are zero where
    inactive; the solver itself is never differentiated. `constraint` receives the `active` mask and
    must return finite values (and finite derivatives) at inactive entries, e.g. by substituting
    safe inputs there (the double-`where` trick).
    """

    @jax.custom_jvp
    def eta_fn(params, consts, eps):
        return solve(params, consts, eps)

    @eta_fn.defjvp
    def eta_jvp(primals, tangents):
        params, consts, eps = primals
        dparams, dconsts, deps = tangents
        eta = solve(params, consts, eps)
        active = eta > 0
        eta_in = jnp.where(active, eta, 1.0)
        fn = lambda e, p, c: constraint(e, p, c, active)
        _, ds_deta = jax.jvp(lambda e: fn(e, params, consts), (eta_in,), (jnp.ones_like(eta_in),))
        _, ds_dtheta = jax.jvp(lambda p, c: fn(eta_in, p, c), (params, consts), (dparams, dconsts))
        # The constraint strictly decreases in eta where active; guard the division anyway.
        tiny = jnp.finfo(eta.dtype).tiny
        den = jnp.where(active, jnp.minimum(ds_deta, -tiny), -1.0)
        deta = jnp.where(active, (deps - ds_dtheta) / den, 0.0)
        return eta, deta

    return eta_fn(params, consts, eps)


# --------------------------------------------------------------------------------------------
# KL pieces (public)
# --------------------------------------------------------------------------------------------


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
    white = _solve_lower(old_chol, diff[..., None])[..., 0]
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
    white = _solve_lower(old_chol, chol)
    # |diag|: a factor with negative diagonal entries describes the same covariance.
    logdet_ratio = jnp.sum(jnp.log(jnp.abs(_diag(old_chol) / _diag(chol))), axis=-1)
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


def _masked_log_softmax(logits: chex.Array, mask: chex.Array) -> chex.Array:
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
    log_p = _masked_log_softmax(logits, mask)
    log_q = _masked_log_softmax(other_logits, mask)
    return jnp.sum(jnp.where(mask, jnp.exp(log_p) * (log_p - log_q), 0.0), axis=-1)


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


def _batch_shape(what: str, shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    try:
        return jnp.broadcast_shapes(*shapes.values())
    except ValueError:
        desc = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"{what}: batch shapes are not broadcast-compatible: {desc}") from None


def _check_gaussian_shapes(mean, chol, old_mean, old_chol, eps_mean, eps_cov) -> tuple:
    """Validates the shapes of `project_gaussian`'s inputs; returns (batch_shape, d)."""
    for name, arr in (("mean", mean), ("old_mean", old_mean)):
        if arr.ndim < 1:
            raise ValueError(f"project_gaussian: {name} must have shape (..., d), got {arr.shape}")
    for name, arr in (("chol", chol), ("old_chol", old_chol)):
        if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]:
            raise ValueError(
                f"project_gaussian: {name} must have shape (..., d, d), got {arr.shape}"
            )
    d = mean.shape[-1]
    for name, arr in (("chol", chol), ("old_mean", old_mean), ("old_chol", old_chol)):
        if arr.shape[-1] != d:
            raise ValueError(
                f"project_gaussian: mean {mean.shape} has d = {d} but {name} {arr.shape} has "
                f"d = {arr.shape[-1]}"
            )
    batch = _batch_shape(
        "project_gaussian",
        {
            "mean": mean.shape[:-1],
            "chol": chol.shape[:-2],
            "old_mean": old_mean.shape[:-1],
            "old_chol": old_chol.shape[:-2],
            "eps_mean": jnp.shape(eps_mean),
            "eps_cov": jnp.shape(eps_cov),
        },
    )
    return batch, d


# --------------------------------------------------------------------------------------------
# Gaussian projection
# --------------------------------------------------------------------------------------------


def project_mean(
    mean: chex.Array, old_mean: chex.Array, old_chol: chex.Array, eps: chex.Array
) -> chex.Array:
    """Closed-form mean projection (algorithm.md §4.1), differentiable by ordinary autodiff.

    Args:
        mean: (..., d) predicted mean; old_mean: (..., d); old_chol: (..., d, d) (treated as
            constants: wrap in stop_gradient yourself if calling directly); eps: (...) bound >= 0.

    Returns:
        (..., d): `mean` where its mean part m is <= eps, else
        old_mean + sqrt(eps / m) (mean - old_mean), whose mean part is exactly eps.
    """
    m = mean_kl_part(mean, old_mean, old_chol)
    eps = jnp.maximum(eps, 0.0)
    active = m > eps
    # Double where: the unused branch sees a harmless m, so its gradient is never NaN.
    m_safe = jnp.where(active, m, 1.0)
    ratio = jnp.where(active, jnp.sqrt(eps) / jnp.sqrt(m_safe), 1.0)
    projected = old_mean + ratio[..., None] * (mean - old_mean)
    return jnp.where(active[..., None], projected, mean)


def _whitened_gram(chol, old_chol):
    """B = Q^T Q, Q = L^{-1} L_o: the predicted precision whitened by the old covariance."""
    q = _solve_lower(chol, old_chol)
    return _symmetrize(jnp.swapaxes(q, -1, -2) @ q)


def _interpolate(eta, gram):
    """P(eta) = (B + eta I) / (1 + eta): the projected precision in the old frame."""
    eye = jnp.eye(gram.shape[-1], dtype=gram.dtype)
    return (gram + eta[..., None, None] * eye) / (1.0 + eta)[..., None, None]


def _projected_chol(precision, old_chol):
    """L* = L_o V^{-T} with V V^T = P, V upper: L* L*^T = L_o P^{-1} L_o^T = Sigma*.

    With J the reversal permutation, V = J R J for R = chol(J P J), so that
    L* = (R^{-1} J L_o^T)^T J: one Cholesky and one forward substitution. Returns (L*, ok).
    """
    r = _cholesky(_flip2(precision))
    y = _solve_lower(r, jnp.flip(jnp.swapaxes(old_chol, -1, -2), axis=-2))
    return jnp.tril(jnp.flip(jnp.swapaxes(y, -1, -2), axis=-1)), jnp.all(_diag(r) > 0, axis=-1)


def _cov_constraint(eta, chol, consts, active):
    """s(Sigma*(eta), Sigma_o) by matrix operations (differentiable; used for the implicit JVP).

    With P = R R^T: s = 1/2 [tr P^{-1} - d + log det P] = 1/2 (||R^{-1}||_F^2 - d) + sum log diag R.
    """
    old_chol = consts[0]
    chol = jnp.where(active[..., None, None], chol, old_chol)  # inactive: P = I, harmless
    r = _cholesky(_interpolate(eta, _whitened_gram(chol, old_chol)))
    d = chol.shape[-1]
    inv = _solve_lower(r, jnp.broadcast_to(jnp.eye(d, dtype=chol.dtype), r.shape))
    return 0.5 * (jnp.sum(inv**2, axis=(-2, -1)) - d) + jnp.sum(jnp.log(jnp.abs(_diag(r))), axis=-1)


def _tridiag_constraint(eta, diag, off):
    """s(Sigma*(eta), Sigma_o) in O(d) from the tridiagonal form T = (diag, off) of B.

    With pivots delta_i of the LDL^T factorisation of T + eta I, unit bidiagonal multipliers
    l_i = off_i / delta_i and S = (1 + eta)(T + eta I)^{-1} (the projected covariance, old frame):
    log det S = sum_i log((1 + eta) / delta_i) and tr S = (1 + eta) sum_i (1 + g_i) / delta_i with
    g_0 = 0, g_i = l_{i-1}^2 (1 + g_{i-1}) >= 0 (from the diagonal of L^{-T} D^{-1} L^{-1}). So,
    with y_i = (1 + eta) / delta_i - 1,
    s = 1/2 sum_i [y_i - log(1 + y_i) + (1 + eta) g_i / delta_i]: a sum of non-negative terms,
    free of the cancellation of 1/2 [tr S - d - log det S] near S = I (which matters in float32).
    """
    fin = jnp.finfo(diag.dtype)
    one_eta = 1.0 + eta
    floor = one_eta * fin.eps  # T + eta I is PSD; guard pivots that rounding made non-positive

    def step(carry, inputs):  # the only sequential part: d - 1 tiny steps
        delta, g = carry
        diag_i, off_prev = inputs
        shift = off_prev**2 / delta
        g = shift / delta * (1.0 + g)
        delta = jnp.maximum(diag_i + eta - shift, floor)
        return (delta, g), (shift, delta, g)

    first = jnp.maximum(diag[..., 0] + eta, floor)
    zero = jnp.zeros_like(eta)
    inputs = (jnp.moveaxis(diag[..., 1:], -1, 0), jnp.moveaxis(off, -1, 0))
    _, rest = jax.lax.scan(step, (first, zero), inputs)
    shift, delta, g = (
        jnp.concatenate([start[None], r], axis=0)
        for start, r in zip((zero, first, zero), rest, strict=True)
    )
    shift, delta, g = (jnp.moveaxis(x, 0, -1) for x in (shift, delta, g))
    y = (1.0 - diag + shift) / delta  # (1 + eta - delta_i) / delta_i without the eta cancellation
    return 0.5 * jnp.sum(_x_minus_log1p(y) + one_eta[..., None] * g / delta, axis=-1)


def _solve_cov_eta(chol, consts, eps):
    """Dual variable eta >= 0 of the covariance projection (0 where the bound is inactive).

    consts = (old_chol, B, active): B the whitened predicted precision (no gradient needed here).
    """
    _, gram, active = consts
    diag, off = _tridiagonalize(gram)
    # Bracket: every eigenvalue b of B lies in [0, g] (Gershgorin), so |1 - b| <= r = max(1, g).
    # For eta >= 2r each |y_i| <= 1/2 in the eigenbasis, where y - log1p(y) <= y^2, hence
    # s(eta) <= d r^2 / (2 eta^2), and eta_hi below gives s(eta_hi) <= eps / 4 < eps.
    abs_off = jnp.abs(off)
    pad = jnp.zeros_like(diag[..., :1])
    radius = jnp.concatenate([abs_off, pad], -1) + jnp.concatenate([pad, abs_off], -1)
    r = jnp.maximum(jnp.max(diag + radius, axis=-1), 1.0)
    fin = jnp.finfo(diag.dtype)
    eps_pos = jnp.maximum(eps, fin.tiny**0.5)
    eta_hi = r * jnp.maximum(2.0, jnp.sqrt(2.0 * diag.shape[-1] / eps_pos))
    eta_hi = jnp.minimum(eta_hi, _eta_cap(fin))
    eta = _find_eta(lambda e: _tridiag_constraint(e, diag, off), eps, eta_hi)
    return jnp.where(active, jnp.maximum(eta, fin.tiny), 0.0)


def _cov_eta_and_gram(chol, old_chol, eps):
    """Broadcasts and normalises the inputs; returns (eta, B, chol, old_chol).

    B is differentiable in chol and is that of old_chol itself (B = I) where the bound is inactive.
    """
    shape = jnp.broadcast_shapes(chol.shape, old_chol.shape, jnp.shape(eps) + chol.shape[-2:])
    chol = _positive_diag_tril(jnp.broadcast_to(chol, shape))
    old_chol = jax.lax.stop_gradient(_positive_diag_tril(jnp.broadcast_to(old_chol, shape)))
    eps = jnp.broadcast_to(jnp.maximum(eps, 0.0), shape[:-2])
    active = cov_kl_part(chol, old_chol) > eps
    # Double where: inactive entries compute on chol = old_chol (B = I), so nothing can be NaN.
    chol_in = jnp.where(active[..., None, None], chol, old_chol)
    gram = _whitened_gram(chol_in, old_chol)
    consts = (old_chol, jax.lax.stop_gradient(gram), active)
    eta = _implicit_eta(_solve_cov_eta, _cov_constraint, chol_in, consts, eps)
    return eta, gram, chol, old_chol


def cov_projection_eta(chol: chex.Array, old_chol: chex.Array, eps: chex.Array) -> chex.Array:
    """Lagrange multiplier eta of the covariance projection, with implicit gradients.

    Computes in the dtype of its inputs (`project_gaussian` promotes to float64 under x64).

    Args:
        chol: (..., d, d) predicted Cholesky factor.
        old_chol: (..., d, d) old Cholesky factor (constant: stop-gradient).
        eps: covariance bound >= 0, broadcastable to the batch shape.

    Returns:
        (...) eta >= 0; exactly 0 where the covariance part of KL(pred || old) is <= eps.
    """
    return _cov_eta_and_gram(chol, old_chol, eps)[0]


def project_cov(chol: chex.Array, old_chol: chex.Array, eps: chex.Array) -> chex.Array:
    """KL projection of a covariance onto {Sigma : s(Sigma, Sigma_o) <= eps} (algorithm.md §4.2).

    Computes in the dtype of its inputs (`project_gaussian` promotes to float64 under x64).

    Args:
        chol: (..., d, d) lower-triangular predicted factor (a negative diagonal is sign-flipped;
            the upper triangle is ignored).
        old_chol: (..., d, d) old factor, same conventions, treated as a constant (stop-gradient).
        eps: bound >= 0 (negative values act as 0), broadcastable to the batch shape.

    Returns:
        (..., d, d) lower-triangular projected factor with positive diagonal: `chol` itself (exact)
        where the bound is inactive, else the factor of Sigma*(eta) with s(Sigma*, Sigma_o) = eps.
        Entries whose factorisation fails fall back to `old_chol` (never NaN for finite inputs).
    """
    eta, gram, chol, old_chol = _cov_eta_and_gram(chol, old_chol, eps)
    active = (eta != 0)[..., None, None]  # a NaN eta (failed solve) counts as active: fallback
    projected, ok = _projected_chol(_interpolate(eta, gram), old_chol)  # inactive: P = I
    ok = ok & jnp.all(jnp.isfinite(projected), axis=(-2, -1))
    fallback = jnp.where(active, old_chol, chol)
    return jnp.where(active & ok[..., None, None], projected, fallback)


def project_gaussian(
    mean: chex.Array,
    chol: chex.Array,
    old_mean: chex.Array,
    old_chol: chex.Array,
    eps_mean: chex.Array,
    eps_cov: chex.Array,
) -> tuple[chex.Array, chex.Array]:
    """Split KL trust-region projection of a batch of Gaussians (design.md §3.3).

    Returns the Gaussian closest to the prediction N(mean, chol chol^T) whose mean part and
    covariance part of KL(. || N(old_mean, old_chol old_chol^T)) are at most eps_mean and eps_cov.
    Inside the bounds the prediction is returned unchanged (and the gradient is the identity).
    The old parameters are constants (stop-gradient): the old model is detached in aVIPS.
    Differentiable (forward and reverse mode) in mean, chol, eps_mean and eps_cov; the covariance
    dual is differentiated implicitly, never through the root finder. jit/vmap-friendly; on CPU
    large batches are processed in cache-sized chunks (`jax.lax.map`), elsewhere all at once.

    Args:
        mean: (..., d) predicted means.
        chol: (..., d, d) predicted lower-triangular Cholesky factors (positive diagonal).
        old_mean: (..., d) old means.
        old_chol: (..., d, d) old Cholesky factors.
        eps_mean: bound on the mean part (nats), scalar or broadcastable to the batch shape.
        eps_cov: bound on the covariance part (nats), scalar or broadcastable to the batch shape.

    Returns:
        (mean_p (..., d), chol_p (..., d, d)) with the broadcast batch shape of all inputs and the
        floating dtype of the inputs (computations run in float64 when x64 is enabled).

    Raises:
        ValueError: if a shape is wrong (not (..., d) / (..., d, d), d mismatch) or the batch shapes
            of the inputs (eps included) are not broadcast-compatible.
    """
    mean, chol, old_mean, old_chol = map(jnp.asarray, (mean, chol, old_mean, old_chol))
    batch, d = _check_gaussian_shapes(mean, chol, old_mean, old_chol, eps_mean, eps_cov)
    out_dtype = jnp.result_type(mean, chol, old_mean, old_chol, jnp.float32)
    dtype = _compute_dtype(mean, chol, old_mean, old_chol)
    cast = lambda x, shape: jnp.broadcast_to(jnp.asarray(x, dtype), shape)
    n = math.prod(batch)
    flat = [
        cast(x, batch + shape).reshape((n,) + shape)
        for x, shape in zip(
            (mean, chol, old_mean, old_chol, eps_mean, eps_cov),
            ((d,), (d, d), (d,), (d, d), (), ()),
            strict=True,
        )
    ]
    chunk = _cpu_chunk_size(n, d, dtype)
    if chunk:  # on CPU, chunks whose matrices stay in cache; elsewhere the whole batch at once
        chunked = lambda *xs: _map_in_chunks(_project_flat, xs, chunk)
        mean_p, chol_p = jax.lax.platform_dependent(*flat, cpu=chunked, default=_project_flat)
    else:
        mean_p, chol_p = _project_flat(*flat)
    mean_p, chol_p = mean_p.reshape(batch + (d,)), chol_p.reshape(batch + (d, d))
    chex.assert_shape([mean_p, chol_p], [batch + (d,), batch + (d, d)])
    return mean_p.astype(out_dtype), chol_p.astype(out_dtype)


def _project_flat(mean, chol, old_mean, old_chol, eps_mean, eps_cov):
    """project_gaussian on a flat batch (N, ...) of inputs of one dtype."""
    old_mean, old_chol = jax.lax.stop_gradient((old_mean, _positive_diag_tril(old_chol)))
    mean_p = project_mean(mean, old_mean, old_chol, eps_mean)
    return mean_p, project_cov(chol, old_chol, eps_cov)


def _cpu_chunk_size(n: int, d: int, dtype: jnp.dtype) -> int | None:
    """Batch chunk for CPU (about _CPU_CHUNK_BYTES of d x d matrices), None if not worth it.

    XLA:CPU runs each step of the small loops over the whole batch; with large batches and d the
    (N, d, d) arrays no longer fit in cache and every step streams them from memory (seen: 2-3x
    slower at N = 1e4, d = 34). Mapping over chunks keeps each chunk's matrices in cache.
    """
    size = max(_CPU_CHUNK_BYTES // (d * d * jnp.dtype(dtype).itemsize), 64)
    return size if n >= 4 * size else None


def _map_in_chunks(fn, args, chunk):
    """fn over the leading axis of args in chunks of `chunk` (lax.map; last chunk padded)."""
    n = args[0].shape[0]
    pad = -n % chunk
    padded = [jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad,) + x.shape[1:])]) for x in args]
    out = jax.lax.map(lambda xs: fn(*xs), [x.reshape((-1, chunk) + x.shape[1:]) for x in padded])
    return tuple(o.reshape((-1,) + o.shape[2:])[:n] for o in out)


# --------------------------------------------------------------------------------------------
# Categorical projection
# --------------------------------------------------------------------------------------------


def _interpolated_log_probs(eta, log_p, log_q, mask):
    """log of w* ∝ p^{1/(1+eta)} q^{eta/(1+eta)} over the active entries (0 elsewhere)."""
    mixed = (log_p + eta[..., None] * log_q) / (1.0 + eta[..., None])
    return _masked_log_softmax(mixed, mask)


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
    eta_hi = jnp.minimum(jnp.maximum(2.0 * spread / eps_pos, 1.0), _eta_cap(fin))
    solve = lambda e: _cat_constraint(e, log_p, consts, active)
    eta = _find_eta(solve, eps, eta_hi)
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
    return _batch_shape("project_categorical", {**shapes, "eps": jnp.shape(eps)})


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
    dtype = _compute_dtype(logits, old_logits)
    shape = batch + logits.shape[-1:]
    logits = jnp.broadcast_to(logits.astype(out_dtype), shape)
    mask = jnp.broadcast_to(mask, shape)
    log_p = _masked_log_softmax(logits.astype(dtype), mask)
    log_q = jax.lax.stop_gradient(
        _masked_log_softmax(jnp.broadcast_to(old_logits, shape).astype(dtype), mask)
    )
    eps = jnp.broadcast_to(jnp.maximum(jnp.asarray(eps, dtype), 0.0), batch)
    eta = _implicit_eta(_solve_cat_eta, _cat_constraint, log_p, (log_q, mask), eps)
    projected = _interpolated_log_probs(eta, log_p, log_q, mask).astype(out_dtype)
    return jnp.where((eta > 0)[..., None] & mask, projected, logits)
