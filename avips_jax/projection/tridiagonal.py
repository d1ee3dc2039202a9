"""The covariance constraint of the Gaussian projection in O(d), from a tridiagonal form.

The root finder evaluates s(Sigma*(eta), Sigma_o) many times per projection: B (the predicted
precision whitened by the old covariance) is reduced once to tridiagonal form (Householder,
`tridiagonalize`), after which each evaluation costs O(d) (`cov_constraint`), from the LDL^T
pivots of T + eta I, as a sum of non-negative terms (no cancellation near the bound). Forward only:
the root finder is never differentiated. Written in `jnp` (no LAPACK; see avips_jax/linalg.py).
"""

import chex
import jax
import jax.numpy as jnp

from avips_jax import linalg


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


def tridiagonalize(mat: chex.Array) -> tuple[chex.Array, chex.Array]:
    """Householder reduction of a symmetric (..., d, d) batch to tridiagonal form.

    Returns (diag (..., d), off (..., d - 1)).

    The tridiagonal matrix is orthogonally similar to `mat` (same eigenvalues); off-diagonal signs
    are arbitrary. Forward only (used inside the root finder, never differentiated).
    """
    d = mat.shape[-1]
    rows = jnp.arange(d)

    def body(k, a):
        x = jnp.where(rows > k, linalg.take(a, k, -1), 0.0)  # column k below the diagonal
        head = linalg.take(x, k + 1, -1)
        alpha = -jnp.where(head < 0, -1.0, 1.0) * jnp.sqrt(jnp.sum(x**2, axis=-1))  # H x = alpha e
        v = x - jnp.where(rows == k + 1, alpha[..., None], 0.0)
        vv = jnp.sum(v**2, axis=-1)
        tau = jnp.where(vv > 0, 2.0 / jnp.where(vv > 0, vv, 1.0), 0.0)  # x = 0: H = I
        p = tau[..., None] * jnp.einsum("...ij,...j->...i", a, v)
        w = p - (0.5 * tau * jnp.sum(v * p, axis=-1))[..., None] * v
        return a - v[..., :, None] * w[..., None, :] - w[..., :, None] * v[..., None, :]

    a = jax.lax.fori_loop(0, max(d - 2, 0), body, mat)
    return jnp.diagonal(a, axis1=-2, axis2=-1), jnp.diagonal(a, offset=-1, axis1=-2, axis2=-1)


def cov_constraint(eta: chex.Array, diag: chex.Array, off: chex.Array) -> chex.Array:
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
