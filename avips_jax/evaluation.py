"""Metrics of a trained conditional mixture on held-out contexts.

The toy-target metrics (ELBO gap, mode coverage) and the planar-arm solution count; robot IK
metrics build on the same pieces.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from avips_jax import gmm, objectives
from avips_jax.targets import Target


def model_on_contexts(module, variables: dict, contexts: chex.Array) -> gmm.GMMParams:
    """The mixture's parameters for contexts (B, d_c)."""
    return module.apply(variables, contexts)


def elbo_per_context(
    params: gmm.GMMParams, active, target: Target, contexts, key, n: int = 2000
) -> np.ndarray:
    """Monte-Carlo ELBO per context (B,), minus log Z(c) where the target knows it (the gap
    -KL(q || p), <= 0 up to Monte-Carlo noise)."""
    elbo = objectives.elbo_estimate(params, active, target.log_prob, contexts, key, n)
    if target.is_normalized:
        elbo = elbo - target.log_normalizer(contexts)
    return np.asarray(elbo)


def mode_distances(
    params: gmm.GMMParams, active, modes: chex.Array, mode_stds: chex.Array, min_weight=0.01
) -> np.ndarray:
    """For each true mode, the distance to the nearest component mean, in units of the mode's
    length scale, over components whose weight at that context is >= min_weight.

    Args:
        params: mixture on B contexts.
        active: (K,) bool.
        modes: (B, M, d) true mode locations.
        mode_stds: (B, M) length scale of each mode.
        min_weight: components lighter than this do not count as covering a mode.

    Returns:
        (B, M) distances / std (inf where no component qualifies).
    """
    w = jnp.exp(gmm.log_weights(params, active))  # (B, K)
    dist = jnp.linalg.norm(params.means[:, None, :, :] - modes[:, :, None, :], axis=-1)
    dist = jnp.where((w >= min_weight)[:, None, :], dist, jnp.inf)
    return np.asarray(jnp.min(dist, axis=-1) / mode_stds)


def heavy_components(params: gmm.GMMParams, active, min_weight: float = 0.01) -> np.ndarray:
    """Number of components with weight >= min_weight per context, (B,)."""
    w = jnp.exp(gmm.log_weights(params, active))
    return np.asarray(jnp.sum(w >= min_weight, axis=-1))


def planar_solution_clusters(
    params: gmm.GMMParams,
    active,
    end_effector,
    contexts: chex.Array,
    tol: float = 0.05,
    gap: float = 0.4,
    min_weight: float = 0.01,
) -> np.ndarray:
    """Distinct IK solutions among the component means, per context (gmmvi's planar metric).

    A component mean counts as a solution when its end-effector is within `tol` of the goal and
    its weight is >= min_weight; solutions whose first joint angles differ by less than `gap`
    (after sorting) fall in the same cluster.

    Returns:
        (B,) number of clusters.
    """
    w = np.asarray(jnp.exp(gmm.log_weights(params, active)))
    err = np.asarray(jnp.linalg.norm(end_effector(params.means) - contexts[:, None], axis=-1))
    first = np.asarray(params.means[..., 0])
    counts = []
    for b in range(first.shape[0]):
        angles = np.sort(first[b][(err[b] < tol) & (w[b] >= min_weight)])
        counts.append(0 if angles.size == 0 else 1 + int(np.sum(np.diff(angles) >= gap)))
    return np.asarray(counts)


def sample_key_contexts(target: Target, seed: int, n: int) -> chex.Array:
    """A fixed, seeded set of held-out contexts (B, d_c)."""
    return target.sample_contexts(jax.random.PRNGKey(10_000 + seed), n)
