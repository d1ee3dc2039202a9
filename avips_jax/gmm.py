"""Conditional Gaussian mixtures: log-densities, responsibilities, sampling and entropy.

A conditional GMM evaluated on a batch of B contexts is a `GMMParams` pytree (logits (B, K), means
(B, K, d), lower-triangular Cholesky factors (B, K, d, d)) plus an `active` (K,) bool mask over the
K_max slots. Inactive slots have weight exactly 0 (log-weight -inf) and never produce NaN in values
or gradients, as long as callers mask -inf entries with `jnp.where` before multiplying them.

All densities are computed in log space with triangular solves (never explicit inverses; the
LAPACK-free ones of `linalg`, since jaxlib's batched CPU LAPACK kernels can deadlock);
log det(L L^T) = 2 sum log diag(L). Everything is jit- and vmap-friendly; shapes are static and
checked at trace time (a `ValueError` names the offending shape).
"""

import math

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np

from avips_jax import linalg

LOG_2PI = math.log(2.0 * math.pi)
# Finite stand-in for -inf inside log_softmax so that all-masked rows cannot produce NaN.
_MASK_FILL = -1e30


@flax.struct.dataclass
class GMMParams:
    """Parameters of a conditional GMM evaluated on B contexts.

    Attributes:
        logits: (B, K) unnormalised log-weights (inactive slots are masked by `active` elsewhere).
        means: (B, K, d) component means.
        chols: (B, K, d, d) lower-triangular Cholesky factors with positive diagonal.
    """

    logits: chex.Array
    means: chex.Array
    chols: chex.Array

    @property
    def num_contexts(self) -> int:
        return self.logits.shape[0]

    @property
    def num_components(self) -> int:
        return self.logits.shape[1]

    @property
    def dim(self) -> int:
        return self.means.shape[-1]


# --------------------------------------------------------------------------------------------
# Shape checks
# --------------------------------------------------------------------------------------------


def check_params(params: GMMParams) -> tuple[int, int, int]:
    """Checks the shapes of `params` against each other.

    Returns:
        (B, K, d).

    Raises:
        ValueError: if the ranks or sizes are inconsistent.
    """
    logits, means, chols = (jnp.shape(a) for a in (params.logits, params.means, params.chols))
    if len(logits) != 2 or len(means) != 3 or len(chols) != 4:
        raise ValueError(
            "GMMParams needs logits (B, K), means (B, K, d), chols (B, K, d, d); got shapes "
            f"logits {logits}, means {means}, chols {chols}."
        )
    b, k = logits
    d = means[-1]
    if means != (b, k, d) or chols != (b, k, d, d):
        raise ValueError(
            f"Inconsistent GMMParams shapes: logits {logits} (B={b}, K={k}), means {means} "
            f"(expected {(b, k, d)}), chols {chols} (expected {(b, k, d, d)})."
        )
    return b, k, d


def check_active(active: chex.Array, num_components: int) -> chex.Array:
    """Checks that `active` is a (K,) mask and returns it as bool."""
    if jnp.shape(active) != (num_components,):
        raise ValueError(
            f"active must have shape (K,) = ({num_components},), got {jnp.shape(active)}."
        )
    return jnp.asarray(active).astype(bool)


def _check_points(x: chex.Array, b: int, d: int, name: str = "x") -> tuple[int, ...]:
    """Checks x has shape (..., B, d) and returns the leading shape."""
    shape = jnp.shape(x)
    if len(shape) < 2 or shape[-2:] != (b, d):
        raise ValueError(f"{name} must have shape (..., B={b}, d={d}), got {shape}.")
    return shape[:-2]


# --------------------------------------------------------------------------------------------
# Cholesky parameterisation
# --------------------------------------------------------------------------------------------


def num_tril(dim: int) -> int:
    """Number of entries of a d x d lower triangle including the diagonal, d(d+1)/2."""
    return dim * (dim + 1) // 2


def num_offdiag(dim: int) -> int:
    """Number of strictly-lower entries of a d x d matrix, d(d-1)/2."""
    return dim * (dim - 1) // 2


def fill_lower_triangular(vec: chex.Array, dim: int, strict: bool = False) -> chex.Array:
    """Fills a (strictly) lower-triangular matrix row by row from a vector.

    The order is that of `numpy.tril_indices(dim, -1 if strict else 0)` (row-major): for d = 3,
    non-strict, vec = (L00, L10, L11, L20, L21, L22).

    Args:
        vec: (..., d(d+1)/2) or, with `strict`, (..., d(d-1)/2).
        dim: d.
        strict: fill only the strictly-lower part (diagonal and upper part zero).

    Returns:
        (..., d, d) matrix, zero above (and, with `strict`, on) the diagonal.
    """
    rows, cols = np.tril_indices(dim, -1 if strict else 0)
    if jnp.shape(vec)[-1:] != (len(rows),):
        raise ValueError(
            f"fill_lower_triangular(dim={dim}, strict={strict}) needs a last axis of "
            f"{len(rows)}, got shape {jnp.shape(vec)}."
        )
    mat = jnp.zeros(jnp.shape(vec)[:-1] + (dim, dim), dtype=jnp.result_type(vec))
    return mat.at[..., rows, cols].set(vec)


def lower_triangular_to_vector(mat: chex.Array, strict: bool = False) -> chex.Array:
    """Inverse of `fill_lower_triangular`: (..., d, d) -> (..., d(d+1)/2) (or d(d-1)/2)."""
    dim = jnp.shape(mat)[-1]
    if jnp.shape(mat)[-2:] != (dim, dim):
        raise ValueError(f"Expected square matrices (..., d, d), got {jnp.shape(mat)}.")
    rows, cols = np.tril_indices(dim, -1 if strict else 0)
    return mat[..., rows, cols]


def softplus_inverse(y: chex.Array) -> chex.Array:
    """Inverse of softplus for y > 0: log(exp(y) - 1), computed stably."""
    y = jnp.asarray(y)
    return y + jnp.log(-jnp.expm1(-y))


def diag_from_raw(raw: chex.Array, init_std: chex.Array, min_std: float) -> chex.Array:
    """Cholesky diagonal softplus(raw + softplus^{-1}(init_std - min_std)) + min_std.

    raw = 0 gives init_std; the result is always >= min_std (docs/math.md §1.2).

    Args:
        raw: (..., d) unconstrained values.
        init_std: scalar or (d,) diagonal at raw = 0; must exceed min_std.
        min_std: floor of the diagonal.
    """
    shift = softplus_inverse(jnp.asarray(init_std) - min_std)
    return jax.nn.softplus(raw + shift) + min_std


def raw_from_diag(diag: chex.Array, init_std: chex.Array, min_std: float) -> chex.Array:
    """Inverse of `diag_from_raw` for diag > min_std."""
    shift = softplus_inverse(jnp.asarray(init_std) - min_std)
    return softplus_inverse(jnp.asarray(diag) - min_std) - shift


def make_cholesky(diag: chex.Array, offdiag: chex.Array) -> chex.Array:
    """Lower-triangular factor from its diagonal (..., d) and strictly-lower entries.

    Args:
        diag: (..., d) positive diagonal.
        offdiag: (..., d(d-1)/2) strictly-lower entries in `fill_lower_triangular` order.

    Returns:
        (..., d, d).
    """
    dim = jnp.shape(diag)[-1]
    lower = fill_lower_triangular(offdiag, dim, strict=True)
    return lower + diag[..., :, None] * jnp.eye(dim, dtype=lower.dtype)


# --------------------------------------------------------------------------------------------
# Densities
# --------------------------------------------------------------------------------------------


def gaussian_log_prob(mean: chex.Array, chol: chex.Array, x: chex.Array) -> chex.Array:
    """log N(x; mean, chol chol^T) with broadcasting over leading axes.

    Args:
        mean: (..., d).
        chol: (..., d, d) lower-triangular, positive diagonal.
        x: (..., d).

    Returns:
        (...) the broadcast batch shape of the three inputs.
    """
    d = jnp.shape(mean)[-1]
    if jnp.shape(chol)[-2:] != (d, d) or jnp.shape(x)[-1:] != (d,):
        raise ValueError(
            f"gaussian_log_prob: mean {jnp.shape(mean)}, chol {jnp.shape(chol)} and x "
            f"{jnp.shape(x)} must end in (d,), (d, d), (d,) with the same d."
        )
    batch = jnp.broadcast_shapes(jnp.shape(mean)[:-1], jnp.shape(chol)[:-2], jnp.shape(x)[:-1])
    diff = jnp.broadcast_to(x - mean, batch + (d,))
    chol = jnp.broadcast_to(chol, batch + (d, d))
    z = linalg.solve_lower(chol, diff[..., None])
    maha = jnp.sum(jnp.square(z[..., 0]), axis=-1)
    half_logdet = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    return -0.5 * (maha + d * LOG_2PI) - half_logdet


def gaussian_entropy(chol: chex.Array) -> chex.Array:
    """Entropy of N(., chol chol^T): (..., d, d) -> (...), in nats."""
    d = jnp.shape(chol)[-1]
    half_logdet = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    return 0.5 * d * (1.0 + LOG_2PI) + half_logdet


def log_weights(params: GMMParams, active: chex.Array) -> chex.Array:
    """Normalised log-weights over the active slots.

    Args:
        params: GMM parameters with logits (B, K).
        active: (K,) bool mask.

    Returns:
        (B, K) log w_k(c_b); -inf for inactive slots (all -inf if no slot is active). Gradients
        to inactive logits are exactly zero.
    """
    _, k, _ = check_params(params)
    active = check_active(active, k)
    filled = jnp.where(active, params.logits, _MASK_FILL)
    return jnp.where(active, jax.nn.log_softmax(filled, axis=-1), -jnp.inf)


def component_log_probs(params: GMMParams, x: chex.Array) -> chex.Array:
    """log N_k(x | c_b) of every point under every component of its context.

    The leading axes of x are folded into the right-hand side of one batched triangular solve,
    so the Cholesky factors are never broadcast or copied. To evaluate per-component samples
    (S, B, K_s, d) against all components, move the sample-component axis in front of B:
    x (S, K_s, B, d) -> (S, K_s, B, K) (see `per_component_sample_log_probs`).

    Args:
        params: GMM parameters (B contexts, K components, dimension d).
        x: (..., B, d) points; x[..., b, :] is evaluated under the components of context b.

    Returns:
        (..., B, K).
    """
    b, k, d = check_params(params)
    lead = _check_points(x, b, d)
    n = math.prod(lead)
    rhs = jnp.moveaxis(jnp.reshape(x, (n, b, d)), 0, -1)  # (B, d, N)
    diff = rhs[:, None] - params.means[..., None]  # (B, K, d, N)
    z = linalg.solve_lower(params.chols, diff)
    maha = jnp.sum(jnp.square(z), axis=-2)  # (B, K, N)
    half_logdet = jnp.sum(jnp.log(jnp.diagonal(params.chols, axis1=-2, axis2=-1)), axis=-1)
    out = -0.5 * (maha + d * LOG_2PI) - half_logdet[..., None]
    return jnp.reshape(jnp.moveaxis(out, -1, 0), lead + (b, k))


def _joint_log_probs(params: GMMParams, active: chex.Array, x: chex.Array) -> chex.Array:
    """log w_k + log N_k(x): (..., B, d) -> (..., B, K), -inf on inactive slots."""
    return log_weights(params, active) + component_log_probs(params, x)


def log_prob(params: GMMParams, active: chex.Array, x: chex.Array) -> chex.Array:
    """Mixture log-density log q(x | c_b) over the active slots.

    Args:
        params: GMM parameters.
        active: (K,) bool mask.
        x: (..., B, d).

    Returns:
        (..., B).
    """
    return jax.nn.logsumexp(_joint_log_probs(params, active, x), axis=-1)


def log_responsibilities(params: GMMParams, active: chex.Array, x: chex.Array) -> chex.Array:
    """log q(k | x, c_b) = log w_k + log N_k(x) - log q(x).

    Args:
        params: GMM parameters.
        active: (K,) bool mask.
        x: (..., B, d).

    Returns:
        (..., B, K); exp sums to 1 over the active slots; -inf on inactive slots.
    """
    joint = _joint_log_probs(params, active, x)
    return joint - jax.nn.logsumexp(joint, axis=-1, keepdims=True)


def _check_per_component_samples(params: GMMParams, x: chex.Array) -> None:
    b, k, d = check_params(params)
    if jnp.ndim(x) != 4 or jnp.shape(x)[1:] != (b, k, d):
        raise ValueError(
            f"Per-component samples must have shape (S, B={b}, K={k}, d={d}), got {jnp.shape(x)}."
        )


def per_component_sample_log_probs(
    params: GMMParams, x: chex.Array, own_log_prob: chex.Array | None = None
) -> chex.Array:
    """Every per-component sample under every component of its context.

    Args:
        params: GMM parameters.
        x: (S, B, K_s, d) samples, e.g. from `sample_components` (K_s = K).
        own_log_prob: optional (S, B, K) exact log N_k(x[s, b, k]) of each sample under the
            component that drew it (`own_sample_log_prob`), used on the diagonal j = k instead
            of the triangular solve. With an ill-conditioned L_k the float32 solve can be off by
            many orders of magnitude (cond(L) ~ 1e20 gave log N ~ -1e28 at a component's own
            sample), and an optimiser then learns to make L worse: the exact term bounds the
            mixture density below by log w_k + log N_k, which no solve error can lower.

    Returns:
        (S, B, K_s, K): entry [s, b, j, k] = log N_k(x[s, b, j] | c_b).
    """
    _check_per_component_samples(params, x)
    out = jnp.swapaxes(component_log_probs(params, jnp.swapaxes(x, 1, 2)), 1, 2)
    if own_log_prob is None:
        return out
    k = out.shape[-1]
    chex.assert_shape(own_log_prob, out.shape[:-1])
    return jnp.where(jnp.eye(k, dtype=bool), own_log_prob[..., None], out)


def per_component_sample_log_responsibilities(
    params: GMMParams, active: chex.Array, x: chex.Array, own_log_prob: chex.Array | None = None
) -> chex.Array:
    """log q(k | x[s, b, j], c_b) for per-component samples: (S, B, K_s, d) -> (S, B, K_s, K)
    (`own_log_prob` as in `per_component_sample_log_probs`)."""
    joint = log_weights(params, active)[:, None, :] + per_component_sample_log_probs(
        params, x, own_log_prob
    )
    return joint - jax.nn.logsumexp(joint, axis=-1, keepdims=True)


def per_component_sample_log_prob(
    params: GMMParams, active: chex.Array, x: chex.Array, own_log_prob: chex.Array | None = None
) -> chex.Array:
    """Mixture log-density of per-component samples: (S, B, K_s, d) -> (S, B, K_s)
    (`own_log_prob` as in `per_component_sample_log_probs`)."""
    joint = log_weights(params, active)[:, None, :] + per_component_sample_log_probs(
        params, x, own_log_prob
    )
    return jax.nn.logsumexp(joint, axis=-1)


# --------------------------------------------------------------------------------------------
# Sampling and entropy
# --------------------------------------------------------------------------------------------


def sample_components(params: GMMParams, key: chex.PRNGKey, n: int) -> chex.Array:
    """Reparameterised samples x = mu_k + L_k eps from every slot (active or not).

    Args:
        params: GMM parameters.
        key: PRNG key.
        n: samples per component and context.

    Returns:
        (n, B, K, d), differentiable w.r.t. means and chols.
    """
    return sample_components_and_noise(params, key, n)[0]


def sample_components_and_noise(
    params: GMMParams, key: chex.PRNGKey, n: int
) -> tuple[chex.Array, chex.Array]:
    """`sample_components` and the standard-normal noise eps (n, B, K, d) it used (the same
    key gives the same eps for any params of the same shapes)."""
    b, k, d = check_params(params)
    eps = jax.random.normal(key, (n, b, k, d), dtype=params.means.dtype)
    return params.means + jnp.einsum("bkij,nbkj->nbki", params.chols, eps), eps


def own_sample_log_prob(chols: chex.Array, eps: chex.Array) -> chex.Array:
    """Exact log N_k(mu_k + L_k eps | mu_k, L_k L_k^T) = -|eps|^2 / 2 - d log(2 pi) / 2 -
    sum log diag L_k, with no solve: chols (B, K, d, d), eps (S, B, K, d) -> (S, B, K).

    Its value and its total derivative (the Mahalanobis term is constant along the sample path)
    are those of `gaussian_log_prob` at the sample, in exact arithmetic."""
    d = eps.shape[-1]
    half_logdet = jnp.sum(jnp.log(jnp.diagonal(chols, axis1=-2, axis2=-1)), axis=-1)
    return -0.5 * (jnp.sum(jnp.square(eps), axis=-1) + d * LOG_2PI) - half_logdet


def sample(
    params: GMMParams, active: chex.Array, key: chex.PRNGKey, n: int
) -> tuple[chex.Array, chex.Array]:
    """Ancestral samples from the mixture (component ids never select inactive slots).

    Samples are reparameterised w.r.t. the selected component's mean and Cholesky factor, but
    the discrete choice carries no gradient to the weights.

    Args:
        params: GMM parameters.
        active: (K,) bool mask; at least one slot must be active.
        key: PRNG key.
        n: samples per context.

    Returns:
        x (n, B, d) and component ids (n, B) int32.
    """
    b, k, d = check_params(params)
    key_ids, key_eps = jax.random.split(key)
    ids = jax.random.categorical(key_ids, log_weights(params, active), axis=-1, shape=(n, b))
    eps = jax.random.normal(key_eps, (n, b, d), dtype=params.means.dtype)
    if d <= k:  # gathering factors costs n*B*d*d memory, one-hot selection n*B*K*d
        rows = jnp.arange(b)
        x = params.means[rows, ids] + jnp.einsum("nbij,nbj->nbi", params.chols[rows, ids], eps)
    else:
        all_x = params.means + jnp.einsum("bkij,nbj->nbki", params.chols, eps)
        one_hot = jax.nn.one_hot(ids, k, dtype=all_x.dtype)
        x = jnp.einsum("nbk,nbki->nbi", one_hot, all_x)
    return x, ids.astype(jnp.int32)


def entropy_estimate(
    params: GMMParams, active: chex.Array, key: chex.PRNGKey, n: int
) -> chex.Array:
    """Monte-Carlo estimate of H(q(. | c_b)) = -E_q[log q(x | c_b)] per context.

    Meant for monitoring: the samples are held fixed (stop-gradient), so the gradient of this
    estimate is not an estimator of the entropy gradient.

    Args:
        params: GMM parameters.
        active: (K,) bool mask.
        key: PRNG key.
        n: samples per context.

    Returns:
        (B,) entropy estimates in nats.
    """
    x, _ = sample(params, active, key, n)
    return -jnp.mean(log_prob(params, active, jax.lax.stop_gradient(x)), axis=0)
