"""The dual variable eta of the KL projections: root finding and implicit gradients.

Both projections (`gaussian`, `categorical`) interpolate between the prediction and the old
distribution with a multiplier eta >= 0 that solves constraint(eta) = eps, a decreasing function of
eta. `find_eta` finds the root inside `jax.lax` with a fixed number of steps (bisection on
log(eta + c), then safeguarded Newton steps that never leave the bracket) on a bracket that the
caller guarantees by construction; `implicit_eta` differentiates the root through the implicit
function theorem (`jax.custom_jvp`, forward and reverse mode), never through the root finder.
"""

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp

# Offset c of the bisection variable w = log(eta + c): w = log(c) is eta = 0 exactly, so the bracket
# [0, eta_hi] is covered with linear resolution near 0 and logarithmic resolution for large eta.
_ETA_OFFSET = 1e-10
# Bisection steps, then safeguarded Newton steps, of the root finder (see `find_eta`).
_NUM_BISECTION_STEPS = 16
_NUM_NEWTON_STEPS = 5


def compute_dtype(*arrays: chex.Array) -> jnp.dtype:
    """float64 when x64 is enabled, else the (floating) result type of the inputs."""
    if jax.dtypes.canonicalize_dtype(jnp.float64) == jnp.float64:
        return jnp.dtype(jnp.float64)
    return jnp.dtype(jnp.result_type(*arrays, jnp.float32))


def batch_shape(what: str, shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    """The broadcast of the batch `shapes` (name -> shape); ValueError naming them if none."""
    try:
        return jnp.broadcast_shapes(*shapes.values())
    except ValueError:
        desc = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"{what}: batch shapes are not broadcast-compatible: {desc}") from None


def eta_cap(fin: jnp.finfo) -> float:
    """Largest eta the solvers consider: (1 + eta)^2 (in derivatives) must not overflow.

    About 1.8e17 in float32 (reached only when the prediction and the old distribution differ by
    a condition number beyond float32 resolution), 1e139 in float64.
    """
    return float(fin.max) ** 0.45


def find_eta(
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


def implicit_eta(
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
