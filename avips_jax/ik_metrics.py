"""IK evaluation metrics (docs/math.md §9) as small pure functions: arrays in, numbers out.

Units: positions and position errors in metres in, reported in millimetres; angles in radians in,
reported in degrees; joint values in the robot's joint units (rad for revolute joints).
Array functions are `jnp` and jit/vmap-friendly; the summaries return Python floats for JSON.

    errors = target.position_error(x, contexts[:, None])     # (T, n) metres
    position_error_stats(errors)   # {"mean_mm": ..., "median_mm": ..., "p95_mm": ...}
    success_rate(errors, 0.01)     # fraction of samples within 1 cm
    mmd_ikflow_batched(x, reference, reference_mask)          # (T,) diversity vs reference IK
    greedy_cluster_counts(q, radius=1.0, mask=success)         # (T,) distinct solution clusters
    nearest_distance_coverage(ref, ref_mask, q, q_mask)        # (T,) how well q covers ref

Non-finite samples are never dropped silently: error statistics are taken over the finite
values and report the non-finite fraction next to them, and success rates count non-finite errors
as failures.
"""

import time
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np

# The MMD kernel of the IKFlow benchmark (Ames et al., RA-L 2022): one inverse-multiquadric term
#   k(d^2) = C^a * ((C + d^2) / a)^(-a),  C = 1.1827009364464547, a = 0.2,
# biased estimator mean(Kxx) + mean(Kyy) - 2 mean(Kxy) on joint vectors. Read from
# jstmn/ikflow `ikflow/math_utils.py::MMD_multiscale` and `src/demos/calculations.py::mmd`
# (n_terms=1, rev_kernel_width = 1.1827009364464547, reverse_loss_a[0] = 0.2; commit 1ac8976;
# docs/robots.md §4.2, docs/math.md §9.5).
IKFLOW_KERNEL_C = 1.1827009364464547
IKFLOW_KERNEL_A = 0.2

# Success thresholds (docs/math.md §9.2, §9.4): raw samples within 1 cm, refined within 1 mm.
SUCCESS_RAW_M = 0.01
SUCCESS_REFINED_M = 0.001


def _finite_values(values: chex.Array) -> tuple[np.ndarray, float]:
    values = np.asarray(values, np.float64).ravel()
    if values.size == 0:
        raise ValueError("error statistics need at least one value, got an empty array")
    finite = np.isfinite(values)
    return values[finite], float(1.0 - finite.mean())


def error_stats(errors: chex.Array, scale: float = 1.0, unit: str = "") -> dict[str, float]:
    """Mean, median and 95th percentile of `errors * scale` over all entries.

    Args:
        errors: (...) non-negative errors, any shape (flattened).
        scale: unit conversion (1e3 for m -> mm).
        unit: suffix of the keys ("mm" -> "mean_mm").

    Returns:
        {"mean_<unit>", "median_<unit>", "p95_<unit>", "nonfinite_fraction"}: statistics over the
        finite entries (NaN if there are none) and the fraction of non-finite entries.

    Raises:
        ValueError: if `errors` is empty.
    """
    finite, bad = _finite_values(errors)
    suffix = f"_{unit}" if unit else ""
    if finite.size == 0:
        stats = {f"{k}{suffix}": float("nan") for k in ("mean", "median", "p95")}
    else:
        finite = finite * scale
        stats = {
            f"mean{suffix}": float(np.mean(finite)),
            f"median{suffix}": float(np.median(finite)),
            f"p95{suffix}": float(np.percentile(finite, 95.0)),
        }
    return {**stats, "nonfinite_fraction": bad}


def position_error_stats(errors_m: chex.Array) -> dict[str, float]:
    """Position error statistics in mm from errors in metres (any shape)."""
    return error_stats(errors_m, 1e3, "mm")


def orientation_error_stats(errors_rad: chex.Array) -> dict[str, float]:
    """Orientation (geodesic angle) error statistics in degrees from errors in radians."""
    return error_stats(errors_rad, 180.0 / np.pi, "deg")


def success_rate(
    position_errors: chex.Array,
    threshold_m: float,
    orientation_errors: chex.Array | None = None,
    threshold_rad: float | None = None,
) -> float:
    """Fraction in [0, 1] of samples whose position error is below `threshold_m` (and whose
    orientation error is below `threshold_rad` when both are given). NaN counts as a failure.

    Args:
        position_errors: (...) metres.
        threshold_m: metres.
        orientation_errors: optional (...) radians, same shape.
        threshold_rad: radians; required with `orientation_errors`.
    """
    pos = np.asarray(position_errors)
    ok = pos < threshold_m
    if orientation_errors is not None:
        if threshold_rad is None:
            raise ValueError("success_rate: orientation_errors given without threshold_rad")
        ang = np.asarray(orientation_errors)
        if ang.shape != pos.shape:
            raise ValueError(
                f"success_rate: orientation errors {ang.shape} != position errors {pos.shape}"
            )
        ok = ok & (ang < threshold_rad)
    if ok.size == 0:
        raise ValueError("success_rate: no samples")
    return float(np.mean(ok))


def joint_limit_violation_percent(
    q: chex.Array, lower: chex.Array, upper: chex.Array, tol: float = 0.0
) -> float:
    """Percentage (0-100) of samples with at least one joint outside [lower - tol, upper + tol].

    Args:
        q: (..., dof) joint vectors.
        lower, upper: (dof,) limits, same units as q.
        tol: slack on both sides (0 counts any excursion).
    """
    q = np.asarray(q)
    lower, upper = np.asarray(lower), np.asarray(upper)
    if q.ndim < 1 or q.shape[-1] != lower.shape[-1] or lower.shape != upper.shape:
        raise ValueError(f"q {q.shape} does not match limits {lower.shape} / {upper.shape}")
    outside = (q < lower - tol) | (q > upper + tol) | ~np.isfinite(q)
    return float(100.0 * np.mean(np.any(outside, axis=-1)))


def elbo_and_entropy(log_p: chex.Array, log_q: chex.Array) -> tuple[float, float]:
    """Monte-Carlo ELBO E_q[log p - log q] and entropy -E_q[log q] from the same samples.

    Args:
        log_p: (T, n) unnormalised target log-density of samples x ~ q(. | c_t).
        log_q: (T, n) model log-density of the same samples.

    Returns:
        (elbo, entropy) in nats, averaged over samples and then contexts (the ELBO of an
        unnormalised target is a bound on log Z(c) up to the missing normaliser).
    """
    log_p, log_q = np.asarray(log_p, np.float64), np.asarray(log_q, np.float64)
    if log_p.shape != log_q.shape or log_p.ndim != 2:
        raise ValueError(f"log_p {log_p.shape} and log_q {log_q.shape} must both be (T, n)")
    elbo = np.mean(np.mean(log_p - log_q, axis=1))
    entropy = np.mean(np.mean(-log_q, axis=1))
    return float(elbo), float(entropy)


def pairwise_sq_dists(x: chex.Array, y: chex.Array) -> jax.Array:
    """Squared Euclidean distances: x (n, d), y (m, d) -> (n, m), clipped at 0."""
    chex.assert_rank([x, y], 2)
    d2 = jnp.sum(x**2, -1)[:, None] + jnp.sum(y**2, -1)[None, :] - 2.0 * x @ y.T
    return jnp.maximum(d2, 0.0)


def ikflow_kernel(sq_dist: chex.Array) -> jax.Array:
    """IKFlow's inverse-multiquadric kernel k(d^2) = C^a ((C + d^2)/a)^(-a) (elementwise)."""
    c, a = IKFLOW_KERNEL_C, IKFLOW_KERNEL_A
    return c**a * ((c + sq_dist) / a) ** (-a)


def _masked_mean(k: jax.Array, weights: jax.Array) -> jax.Array:
    return jnp.sum(k * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def _row_mask(mask: chex.Array | None, rows: int) -> jax.Array:
    mask = jnp.ones(rows, bool) if mask is None else jnp.asarray(mask, bool)
    chex.assert_shape(mask, (rows,))
    return mask


def mmd_ikflow(
    x: chex.Array,
    y: chex.Array,
    y_mask: chex.Array | None = None,
    x_mask: chex.Array | None = None,
) -> jax.Array:
    """Biased MMD^2 estimate mean(Kxx) + mean(Kyy) - 2 mean(Kxy) with the IKFlow kernel.

    The means run over all pairs, i = j included (IKFlow's estimator), so the value depends on
    the set sizes a little; IKFlow compares equally many model and reference solutions.

    Args:
        x: (n, d) model solutions.
        y: (m, d) reference solutions.
        y_mask: optional (m,) bool; only the True rows of y count (e.g. converged refinements).
        x_mask: optional (n,) bool; only the True rows of x count.

    Returns:
        Scalar >= 0 (0 for identical sets); NaN if x or y has no valid row.
    """
    chex.assert_rank([x, y], 2)
    chex.assert_equal_shape_suffix([x, y], 1)
    mx = _row_mask(x_mask, x.shape[0])
    my = _row_mask(y_mask, y.shape[0])
    wx, wy = mx.astype(x.dtype), my.astype(x.dtype)
    kxx = _masked_mean(ikflow_kernel(pairwise_sq_dists(x, x)), wx[:, None] * wx[None, :])
    kyy = _masked_mean(ikflow_kernel(pairwise_sq_dists(y, y)), wy[:, None] * wy[None, :])
    kxy = _masked_mean(ikflow_kernel(pairwise_sq_dists(x, y)), wx[:, None] * wy[None, :])
    value = kxx + kyy - 2.0 * kxy
    return jnp.where(jnp.any(mx) & jnp.any(my), value, jnp.nan)


def mmd_ikflow_batched(
    x: chex.Array,
    y: chex.Array,
    y_mask: chex.Array | None = None,
    x_mask: chex.Array | None = None,
    batch_size: int = 32,
) -> jax.Array:
    """`mmd_ikflow` per target: x (T, n, d), y (T, m, d), masks (T, m) / (T, n) -> (T,).

    Targets are processed `batch_size` at a time to bound memory (T * n * m kernel entries).
    """
    chex.assert_rank([x, y], 3)
    y_mask = jnp.ones(y.shape[:2], bool) if y_mask is None else jnp.asarray(y_mask, bool)
    x_mask = jnp.ones(x.shape[:2], bool) if x_mask is None else jnp.asarray(x_mask, bool)
    chex.assert_shape(y_mask, y.shape[:2])
    chex.assert_shape(x_mask, x.shape[:2])
    return _mmd_batched(jnp.asarray(x), jnp.asarray(y), y_mask, x_mask, batch_size)


@jax.jit(static_argnums=4)
def _mmd_batched(x, y, y_mask, x_mask, batch_size):
    return jax.lax.map(lambda a: mmd_ikflow(*a), (x, y, y_mask, x_mask), batch_size=batch_size)


def nearest_distances(x: chex.Array, y: chex.Array, y_mask: chex.Array | None = None) -> jax.Array:
    """Euclidean distance from each row of x (m, d) to its nearest valid row of y (n, d): -> (m,).

    +inf where y has no valid row. The differences are formed explicitly, not by expanding
    |x|^2 + |y|^2 - 2 x.y (`pairwise_sq_dists`): in float32 the expansion has an error floor of
    ~1e-3 for joint vectors of norm ~3, which would hide that two solutions coincide.

    Args:
        x: (m, d) query points.
        y: (n, d) candidate points.
        y_mask: optional (n,) bool; only the True rows of y count.
    """
    chex.assert_rank([x, y], 2)
    chex.assert_equal_shape_suffix([x, y], 1)
    valid = _row_mask(y_mask, y.shape[0])
    sq = jnp.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)  # (m, n)
    return jnp.sqrt(jnp.min(jnp.where(valid[None, :], sq, jnp.inf), axis=1))


def nearest_distance_coverage(
    reference: chex.Array,
    reference_mask: chex.Array,
    points: chex.Array,
    points_mask: chex.Array,
    batch_size: int = 8,
) -> jax.Array:
    """How well points cover a reference set, per target: the mean over the valid reference rows
    of the Euclidean distance to the nearest valid point (0 when every reference has a point on
    it; large when a region of the reference set has no point near it).

    Args:
        reference: (T, R, d) reference points (e.g. IK solutions, rad).
        reference_mask: (T, R) bool; only the True rows are references.
        points: (T, n, d) points (e.g. refined model samples), same units.
        points_mask: (T, n) bool; only the True rows count.
        batch_size: targets processed at a time (memory ~ batch_size * R * n * d floats).

    Returns:
        (T,) mean nearest distance per target; NaN for a target without a valid reference,
        +inf for one with references but without a valid point.
    """
    chex.assert_rank([reference, points], 3)
    chex.assert_equal_shape_prefix([reference, points], 1)
    chex.assert_shape(reference_mask, reference.shape[:2])
    chex.assert_shape(points_mask, points.shape[:2])
    args = (reference, jnp.asarray(reference_mask, bool), points, jnp.asarray(points_mask, bool))
    return _coverage_batched(*(jnp.asarray(a) for a in args), batch_size)


def _mean_nearest_distance(reference, reference_mask, points, points_mask):
    d = jnp.where(reference_mask, nearest_distances(reference, points, points_mask), 0.0)
    count = jnp.sum(reference_mask)
    return jnp.where(count > 0, jnp.sum(d) / jnp.maximum(count, 1), jnp.nan)


@jax.jit(static_argnums=4)
def _coverage_batched(reference, reference_mask, points, points_mask, batch_size):
    args = (reference, reference_mask, points, points_mask)
    return jax.lax.map(lambda a: _mean_nearest_distance(*a), args, batch_size=batch_size)


def masked_std(x: chex.Array, mask: chex.Array) -> np.ndarray:
    """Per-coordinate standard deviation of the valid rows of each target.

    Args:
        x: (T, n, d) points; mask: (T, n) bool, only the True rows count.

    Returns:
        (T, d) float64; NaN for a target with fewer than 2 valid rows.
    """
    x, mask = np.asarray(x, np.float64), np.asarray(mask, bool)
    count = mask.sum(axis=1)[:, None]  # (T, 1)
    w = mask[..., None]
    mean = np.sum(np.where(w, x, 0.0), axis=1) / np.maximum(count, 1)
    var = np.sum(np.where(w, (x - mean[:, None]) ** 2, 0.0), axis=1) / np.maximum(count - 1, 1)
    return np.where(count >= 2, np.sqrt(var), np.nan)


def mean_pairwise_distance(x: chex.Array) -> jax.Array:
    """Mean Euclidean distance between distinct samples of each target: (T, n, d) -> (T,).

    Needs n >= 2; computed from the (n, n) distance matrix per target.
    """
    chex.assert_rank(x, 3)
    n = x.shape[1]
    if n < 2:
        raise ValueError(f"mean_pairwise_distance needs >= 2 samples per target, got {n}")

    def one(xi):
        d = jnp.sqrt(pairwise_sq_dists(xi, xi) + jnp.eye(n, dtype=xi.dtype))  # no sqrt(0) grads
        return (jnp.sum(d) - n) / (n * (n - 1))

    return jax.lax.map(one, jnp.asarray(x), batch_size=32)


def greedy_clusters(
    x: chex.Array, radius: float, mask: chex.Array | None = None, min_size: int = 1
) -> jax.Array:
    """Number of distinct solution clusters by greedy threshold clustering (deterministic).

    Points are visited in index order; each valid point not yet assigned opens a new cluster and
    takes every unassigned valid point within Euclidean distance `radius` of it (itself included).
    Clusters with at least `min_size` members are counted. On a continuous solution manifold (e.g.
    the 4-D self-motion manifold of a 7-DOF arm with position-only targets) this is a covering
    number at scale `radius`, a measure of spread rather than a count of isolated solutions.

    Args:
        x: (n, d) solutions (e.g. joint vectors, rad).
        radius: cluster radius in the units of x.
        mask: optional (n,) bool; False points are ignored (e.g. samples that miss the target).
        min_size: smallest cluster that counts (>= 1).

    Returns:
        Scalar int32 count.
    """
    chex.assert_rank(x, 2)
    if min_size < 1 or radius <= 0:
        raise ValueError(f"need min_size >= 1 and radius > 0, got {min_size}, {radius}")
    n = x.shape[0]
    valid = jnp.ones(n, bool) if mask is None else jnp.asarray(mask, bool)
    chex.assert_shape(valid, (n,))
    close = pairwise_sq_dists(x, x) <= radius**2

    def visit(i, carry):
        assigned, count = carry
        opens = valid[i] & ~assigned[i]
        members = opens & valid & ~assigned & close[i]
        count = count + (jnp.sum(members) >= min_size).astype(jnp.int32)
        return assigned | members, count

    _, count = jax.lax.fori_loop(0, n, visit, (jnp.zeros(n, bool), jnp.int32(0)))
    return count


def greedy_cluster_counts(
    x: chex.Array,
    radius: float,
    mask: chex.Array | None = None,
    min_size: int = 1,
    batch_size: int = 32,
) -> jax.Array:
    """`greedy_clusters` per target: x (T, n, d), mask (T, n) -> (T,) int32."""
    chex.assert_rank(x, 3)
    if min_size < 1 or radius <= 0:
        raise ValueError(f"need min_size >= 1 and radius > 0, got {min_size}, {radius}")
    mask = jnp.ones(x.shape[:2], bool) if mask is None else jnp.asarray(mask, bool)
    chex.assert_shape(mask, x.shape[:2])
    return _clusters_batched(jnp.asarray(x), mask, float(radius), int(min_size), batch_size)


@jax.jit(static_argnums=(2, 3, 4))
def _clusters_batched(x, mask, radius, min_size, batch_size):
    fn = lambda a: greedy_clusters(a[0], radius, a[1], min_size)  # noqa: E731
    return jax.lax.map(fn, (x, mask), batch_size=batch_size)


def active_components(weights: chex.Array, threshold: float = 0.01) -> np.ndarray:
    """Components with weight > threshold per context: weights (T, K) -> (T,) int."""
    weights = np.asarray(weights)
    if weights.ndim != 2:
        raise ValueError(f"weights must have shape (T, K), got {weights.shape}")
    return np.sum(weights > threshold, axis=-1)


def best_time(fn: Callable[[], object], repeats: int = 5) -> float:
    """Best wall-clock seconds of `fn()` over `repeats` runs after one warm-up (compilation) run;
    every run waits for its outputs with `jax.block_until_ready`."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)
