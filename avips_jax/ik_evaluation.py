"""Evaluate any conditional IK model on a fixed test set (docs/math.md §9).

    metrics = evaluate_model(model, target, contexts, key, samples_per_target=250,
                             refine_fn=refine.refine)

`model` is a `sampling_model.SamplingModel`: `sample`, `sample_with_components` (component ids
for plots), `num_parameters` and, where `has_density`, `log_prob` (ELBO, entropy); a mixture
(`model.AmortizedGMM`) adds its active components and the errors at its modes.
`target` is a `targets.RobotTarget` (IK or TALOS): `position_error(x, c)` (m),
`orientation_error(x, c)` (rad, pose contexts), `log_prob`, `joints(x)`, `robot`, `context`;
it must be hashable (the targets are frozen dataclasses): it is a static argument of the jitted
error and density evaluations.
Refinement-based metrics (success after refinement, MMD against reference solutions from
refined random seeds, coverage of the solution set) need `refine_fn(robot, q0, position,
rotation=None, *, num_iterations)` (refine.py contract; the coverage metrics pass
`num_iterations`, the others use its default) and a target whose x is the robot's joint vector
(`can_refine`): targets with more in x than the joints (TALOS: whole body) report none of them.
"""

import dataclasses
import functools
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np

from avips_jax import gmm, ik_metrics, rotations
from avips_jax.model import AmortizedGMM
from avips_jax.sampling_model import SamplingModel
from avips_jax.targets.base import RobotTarget

# Pose contexts: a sample succeeds when it is within both the position and the angle threshold.
SUCCESS_RAW_RAD = float(np.deg2rad(2.0))  # IKFlow's headline "within 10 mm and 2 deg"
SUCCESS_REFINED_RAD = float(np.deg2rad(0.1))
REFINED_STRICT_M = 1e-4  # the 0.1 mm refinement goal of issue 5
# Coverage metrics: LM iterations of the early and the full convergence count, and the slack on
# the joint limits (refine clamps in float32, which may round a joint just past its limit).
FEW_ITERATIONS, FULL_ITERATIONS = 5, 30
JOINT_LIMIT_TOL = 1e-6


@dataclasses.dataclass(frozen=True)
class Solutions:
    """Model samples on a test set and their per-sample errors (numpy, host memory).

    Attributes:
        contexts: (T, d_c).
        x: (T, n, d) samples.
        components: (T, n) int slot of each sample, or None if the model has no components.
        position_error: (T, n) metres.
        orientation_error: (T, n) radians for pose contexts, else None.
        log_p: (T, n) target log-density at the density samples (= x, except for models with
            `sample_and_log_prob` or a `latent_scale` other than 1, whose own draw of their
            density is used).
        log_q: (T, n) model log-density there, or None if the model has no density.
    """

    contexts: np.ndarray
    x: np.ndarray
    components: np.ndarray | None
    position_error: np.ndarray
    orientation_error: np.ndarray | None
    log_p: np.ndarray
    log_q: np.ndarray | None


def joint_limits(target: RobotTarget) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of the robot joints (rad)."""
    return np.asarray(target.robot.lower), np.asarray(target.robot.upper)


def sample_solutions(
    model: SamplingModel, target: RobotTarget, contexts: chex.Array, key: chex.PRNGKey, n: int
) -> Solutions:
    """n samples per context and their errors and densities.

    Raises:
        ValueError: if the model returns samples of the wrong shape.
    """
    contexts = jnp.asarray(contexts)
    x, ids = model.sample_with_components(key, contexts, n)
    expected = (contexts.shape[0], n, target.dim)
    if tuple(x.shape) != expected:
        raise ValueError(f"model.sample returned shape {tuple(x.shape)}, expected {expected}")
    x_density, log_q = x, None
    if model.has_density and model.samples_follow_density:
        log_q = model.log_prob(x, contexts)
    elif model.has_density:
        # A model sampling at another temperature than its density (the flow's or the GMM's
        # latent scale): ELBO and entropy come from a separate draw of the density itself.
        x_density, log_q = model.sample_and_log_prob(jax.random.fold_in(key, 1), contexts, n)
    pos, ori = errors(target, x, contexts)
    return Solutions(
        contexts=np.asarray(contexts),
        x=np.asarray(x),
        components=None if ids is None else np.asarray(ids),
        position_error=np.asarray(pos),
        orientation_error=None if ori is None else np.asarray(ori),
        log_p=np.asarray(_log_p(target, x_density, contexts)),
        log_q=None if log_q is None else np.asarray(log_q),
    )


@functools.partial(jax.jit, static_argnums=0)
def errors(target, x: chex.Array, contexts: chex.Array):
    """Position errors (T, n) m and, for pose contexts, orientation errors (T, n) rad (else
    None) of x (T, n, d) for contexts (T, d_c); one jitted call (the target is hashable)."""
    c = contexts[:, None, :]
    pose = target.context == "pose"
    return target.position_error(x, c), target.orientation_error(x, c) if pose else None


@functools.partial(jax.jit, static_argnums=0)
def _log_p(target, x, contexts):
    return target.log_prob(x, contexts[:, None, :])


def can_refine(target: RobotTarget) -> bool:
    """Whether x is exactly the joint vector of `target.robot` (refinement applies)."""
    return target.dim == target.robot.dof


def split_contexts(target, contexts: chex.Array) -> tuple[jax.Array, jax.Array | None]:
    """Goal positions (T, 3) m and, for pose contexts, rotations (T, 3, 3) from (w, x, y, z)."""
    contexts = jnp.asarray(contexts)
    if target.context == "pose":
        return contexts[:, :3], rotations.quaternion_to_matrix(contexts[:, 3:7])
    return contexts[:, :3], None


def refine_to_contexts(
    refine_fn, target, q0: chex.Array, contexts: chex.Array, num_iterations: int | None = None
) -> jax.Array:
    """Refines q0 (T, m, dof) towards the goal of each context (T, d_c): -> (T, m, dof), with
    `num_iterations` LM iterations (None: refine_fn's default)."""
    position, rotation = split_contexts(target, contexts)
    rotation = None if rotation is None else rotation[:, None]
    kwargs = {} if num_iterations is None else {"num_iterations": num_iterations}
    return refine_fn(target.robot, jnp.asarray(q0), position[:, None], rotation, **kwargs)


def reached(target, q: chex.Array, contexts: chex.Array, tol_m: float, tol_rad: float):
    """Per-sample success mask (T, m) and position errors (T, m) of joint vectors q (T, m, dof)."""
    pos, ori = jax.device_get(errors(target, jnp.asarray(q), jnp.asarray(contexts)))
    ok = pos < tol_m
    if ori is not None:
        ok &= ori < tol_rad
    return ok, pos


def converged(target, q: chex.Array, contexts: chex.Array) -> np.ndarray:
    """The coverage metrics' convergence test of joint vectors q (T, m, dof): -> (T, m) bool.

    Within 0.1 mm (REFINED_STRICT_M), within 0.1 deg for pose contexts, and inside the joint
    limits (JOINT_LIMIT_TOL slack); non-finite q fails.
    """
    ok, _ = reached(target, q, contexts, REFINED_STRICT_M, SUCCESS_REFINED_RAD)
    lower, upper = joint_limits(target)
    q = np.asarray(q)
    inside = (q >= lower - JOINT_LIMIT_TOL) & (q <= upper + JOINT_LIMIT_TOL)  # False for NaN
    return ok & np.all(inside, axis=-1)


def uniform_joints(target, key: chex.PRNGKey, shape: tuple[int, ...]) -> jax.Array:
    """Joint vectors uniform in the joint limits: -> (*shape, dof) float32."""
    lower, upper = joint_limits(target)
    return jax.random.uniform(key, (*shape, lower.size), jnp.float32, lower, upper)


def reference_solutions(target, contexts, key, num_seeds: int, refine_fn):
    """Reference IK solutions: uniformly random seeds in the joint limits, refined to each goal.

    Returns:
        q (T, num_seeds, dof) and converged (T, num_seeds) bool (within 1 mm, and 0.1 deg for
        pose contexts); only converged rows are solutions.
    """
    seeds = uniform_joints(target, key, (jnp.shape(contexts)[0], num_seeds))
    q = refine_to_contexts(refine_fn, target, seeds, contexts)
    ok, _ = reached(target, q, contexts, ik_metrics.SUCCESS_REFINED_M, SUCCESS_REFINED_RAD)
    return np.asarray(q), ok


def accuracy_metrics(target, sol: Solutions) -> dict:
    """Position/orientation error statistics, raw success rate, joint-limit violations."""
    out = {
        f"position_error_{k}": v
        for k, v in ik_metrics.position_error_stats(sol.position_error).items()
    }
    if sol.orientation_error is not None:
        stats = ik_metrics.orientation_error_stats(sol.orientation_error)
        out.update({f"orientation_error_{k}": v for k, v in stats.items()})
    out["success_rate_raw"] = ik_metrics.success_rate(
        sol.position_error,
        ik_metrics.SUCCESS_RAW_M,
        sol.orientation_error,
        SUCCESS_RAW_RAD if sol.orientation_error is not None else None,
    )
    lower, upper = joint_limits(target)
    q = np.asarray(target.joints(sol.x))
    out["joint_limit_violation_percent"] = ik_metrics.joint_limit_violation_percent(q, lower, upper)
    if sol.log_q is not None:
        out["elbo"], out["entropy"] = ik_metrics.elbo_and_entropy(sol.log_p, sol.log_q)
    return out


def diversity_metrics(target, sol: Solutions, radius: float, min_fraction: float) -> dict:
    """Mean pairwise joint distance and greedy solution clusters among raw successes."""
    q = jnp.asarray(target.joints(sol.x))
    success = sol.position_error < ik_metrics.SUCCESS_RAW_M
    min_size = max(1, int(np.ceil(min_fraction * q.shape[1])))
    counts = np.asarray(ik_metrics.greedy_cluster_counts(q, radius, success, min_size))
    return {
        "mean_pairwise_joint_distance": float(np.mean(ik_metrics.mean_pairwise_distance(q))),
        "clusters_mean": float(np.mean(counts)),
        "clusters_median": float(np.median(counts)),
        "cluster_radius": float(radius),
        "cluster_min_size": min_size,
    }


def refinement_metrics(target, sol: Solutions, key, refine_fn, num_reference, mmd_targets) -> dict:
    """Success after refinement of the model's samples, and MMD against reference solutions."""
    q = refine_to_contexts(refine_fn, target, target.joints(sol.x), sol.contexts)
    ok, pos = reached(target, q, sol.contexts, ik_metrics.SUCCESS_REFINED_M, SUCCESS_REFINED_RAD)
    out = {
        "success_rate_refined": float(np.mean(ok)),
        "success_rate_refined_0p1mm": ik_metrics.success_rate(pos, REFINED_STRICT_M),
    }
    stats = ik_metrics.position_error_stats(pos)
    out.update({f"refined_position_error_{k}": v for k, v in stats.items()})
    out.update(_mmd_metrics(target, sol, key, refine_fn, num_reference, mmd_targets))
    return out


def _mmd_metrics(target, sol: Solutions, key, refine_fn, num_reference, mmd_targets) -> dict:
    """MMD of the model's samples (and of uniform joints) against reference solutions on the
    first `mmd_targets` targets; as in IKFlow, each target compares as many model samples as it
    has converged references (the first ones)."""
    t = min(mmd_targets, sol.x.shape[0])
    key_ref, key_uniform = jax.random.split(key)
    ref, converged = reference_solutions(
        target, sol.contexts[:t], key_ref, num_reference, refine_fn
    )
    model_q = target.joints(sol.x[:t])
    uniform = uniform_joints(target, key_uniform, model_q.shape[:2])
    x_mask = np.arange(model_q.shape[1])[None, :] < converged.sum(axis=1, keepdims=True)
    mmd = np.asarray(ik_metrics.mmd_ikflow_batched(model_q, ref, converged, x_mask))
    mmd_uniform = np.asarray(ik_metrics.mmd_ikflow_batched(uniform, ref, converged, x_mask))
    usable = np.any(converged, axis=1)  # NaN for targets without a converged reference
    nan = float("nan")
    return {
        "mmd": float(np.mean(mmd[usable])) if usable.any() else nan,
        "mmd_uniform_baseline": float(np.mean(mmd_uniform[usable])) if usable.any() else nan,
        "mmd_num_targets": int(usable.sum()),
        "reference_converged_fraction": float(np.mean(converged)),
    }


def coverage_metrics(
    target, sol: Solutions, key, refine_fn, num_reference: int, num_targets: int
) -> dict:
    """How well the model's refined samples cover the IK solution set, against random restarts.

    Joint-space Euclidean distances between robot joint vectors (rad for revolute joints); only
    defined where x is the robot's joint vector (`can_refine`). Every refinement is `refine_fn`
    with FULL_ITERATIONS (30) LM iterations unless stated, and "converged" is `converged` (0.1 mm,
    [0.1 deg,] inside the joint limits).

    On the first `num_targets` test targets (fewer if there are fewer): the reference solution
    set of a target is its converged refinements of `num_reference` uniform joint vectors
    (key split 0); the restarts are its converged refinements of n (= samples per target) other
    uniform joint vectors (key split 1); the model's points are its converged refined n samples.
    For each target with at least one reference, the mean over its references of the distance to
    the nearest model point (`ik_metrics.nearest_distance_coverage`), and likewise to the nearest
    restart. A target with references but no converged model sample (or restart) has no finite
    distance: it is counted, not averaged (a penalty would be an arbitrary number). Both means
    are over the same targets (those with references, a model point and a restart), each target
    weighing the same whatever its number of references (per target first, then over targets),
    so that their ratio compares like with like.

    Returns:
        coverage_distance, coverage_distance_restarts (NaN if no target qualifies),
        coverage_ratio (their ratio; > 1: the model covers the solution set worse than n random
        restarts; where all of a target's solutions are isolated points that both find, both
        distances are at the numerical floor and the ratio is noise), converged_fraction_5it and
        converged_fraction_30it (over all n samples of every test target, not only the first
        `num_targets`), coverage_num_targets (targets in the means), coverage_num_reference,
        coverage_samples (n), coverage_reference_size_mean (converged references per target,
        mean over the `num_targets` targets), coverage_targets_without_model_solution,
        coverage_targets_without_restart_solution, and coverage_joint_spread_ratio: per joint
        (the robot's joint order), the standard deviation of the model's converged points over
        that of the references (each per target, then averaged over the targets in the means):
        below 1 where the model's solutions are narrower than the solution set, i.e. along which
        joints the missing coverage lies.
    """
    t, n = min(num_targets, sol.x.shape[0]), sol.x.shape[1]
    contexts = sol.contexts[:t]
    key_ref, key_restarts = jax.random.split(key)
    ref_seeds = uniform_joints(target, key_ref, (t, num_reference))
    restart_seeds = uniform_joints(target, key_restarts, (t, n))
    # References and restarts in one refinement call: one compilation (~5 s for Panda) less.
    seeds = jnp.concatenate([ref_seeds, restart_seeds], axis=1)
    q, ok = _refine_converged(refine_fn, target, seeds, contexts, FULL_ITERATIONS)
    ref, ref_ok = q[:, :num_reference], ok[:, :num_reference]
    restarts, restarts_ok = q[:, num_reference:], ok[:, num_reference:]
    model_q = target.joints(sol.x)
    _, few_ok = _refine_converged(refine_fn, target, model_q, sol.contexts, FEW_ITERATIONS)
    model, model_ok = _refine_converged(refine_fn, target, model_q, sol.contexts, FULL_ITERATIONS)
    d_model, d_restarts = (
        np.asarray(ik_metrics.nearest_distance_coverage(ref, ref_ok, points, mask))
        for points, mask in ((model[:t], model_ok[:t]), (restarts, restarts_ok))
    )
    has_ref = ref_ok.any(axis=1)
    used = np.isfinite(d_model) & np.isfinite(d_restarts)  # NaN: no reference; inf: no point
    distance = float(np.mean(d_model[used])) if used.any() else float("nan")
    distance_restarts = float(np.mean(d_restarts[used])) if used.any() else float("nan")
    spread = np.full(ref.shape[-1], np.nan)
    if used.any():
        std_model = ik_metrics.masked_std(model[:t], model_ok[:t])[used]  # (used, dof)
        std_ref = ik_metrics.masked_std(ref, ref_ok)[used]
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # a joint NaN everywhere stays NaN
            spread = np.nanmean(std_model, axis=0) / np.nanmean(std_ref, axis=0)
    return {
        "coverage_distance": distance,
        "coverage_distance_restarts": distance_restarts,
        "coverage_ratio": _ratio(distance, distance_restarts),
        "converged_fraction_5it": float(np.mean(few_ok)),
        "converged_fraction_30it": float(np.mean(model_ok)),
        "coverage_num_targets": int(used.sum()),
        "coverage_num_reference": int(num_reference),
        "coverage_samples": int(n),
        "coverage_reference_size_mean": float(np.mean(ref_ok.sum(axis=1))),
        "coverage_targets_without_model_solution": int(np.sum(has_ref & np.isinf(d_model))),
        "coverage_targets_without_restart_solution": int(np.sum(has_ref & np.isinf(d_restarts))),
        "coverage_joint_spread_ratio": [float(v) for v in spread],
    }


def _refine_converged(refine_fn, target, q0, contexts, num_iterations: int):
    """q0 (T, m, dof) refined with `num_iterations` LM iterations, and its `converged` mask."""
    q = refine_to_contexts(refine_fn, target, q0, contexts, num_iterations)
    return q, converged(target, q, contexts)


def _ratio(a: float, b: float) -> float:
    """a / b as a float: inf for a > 0 = b, NaN for 0 / 0 or NaN inputs."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(a) / np.float64(b))


def model_metrics(model: SamplingModel, contexts, threshold: float = 0.01) -> dict:
    """Parameter count and, for mixtures, components with weight > threshold per context."""
    out = {"num_parameters": int(model.num_parameters)}
    if isinstance(model, AmortizedGMM):
        active = ik_metrics.active_components(model.weights(jnp.asarray(contexts)), threshold)
        out.update(
            active_components_mean=float(np.mean(active)),
            active_components_min=int(np.min(active)),
            active_components_max=int(np.max(active)),
        )
        out["num_active_slots"] = int(model.num_active)
    return out


def mode_metrics(model: SamplingModel, target: RobotTarget, contexts) -> dict:
    """Errors at the mean of each context's heaviest component (mixtures only, else {}).

    Set beside the sample errors they split the error into bias (where the components sit) and
    spread (how far samples stray from them): mode_position_error_{mean,median}_mm and, for
    pose contexts, mode_orientation_error_{mean,median}_deg.
    """
    if not isinstance(model, AmortizedGMM):
        return {}
    contexts = jnp.asarray(contexts)
    params = model.gmm_params(contexts)
    heaviest = jnp.argmax(gmm.log_weights(params, model.active), axis=-1)  # (T,)
    modes = jnp.take_along_axis(params.means, heaviest[:, None, None], axis=1)  # (T, 1, d)
    pos, ori = errors(target, modes, contexts)
    out = {
        "mode_position_error_mean_mm": 1e3 * float(np.mean(pos)),
        "mode_position_error_median_mm": 1e3 * float(np.median(pos)),
    }
    if ori is not None:
        out["mode_orientation_error_mean_deg"] = float(np.degrees(np.mean(ori)))
        out["mode_orientation_error_median_deg"] = float(np.degrees(np.median(ori)))
    return out


def latency_metrics(model, contexts, key, repeats: int = 3) -> dict:
    """Best-of-`repeats` sampling times in ms (after a warm-up): one target x 2000 samples, and
    1000 targets x 250 samples (the test contexts repeated to 1000 rows)."""
    contexts = np.asarray(contexts)
    one = jax.device_put(jnp.asarray(contexts[:1]))
    many = jax.device_put(jnp.asarray(np.resize(contexts, (1000, contexts.shape[1]))))
    t1 = ik_metrics.best_time(lambda: model.sample(key, one, 2000), repeats)
    t2 = ik_metrics.best_time(lambda: model.sample(key, many, 250), repeats)
    return {"latency_1x2000_ms": 1e3 * t1, "latency_1000x250_ms": 1e3 * t2}


def evaluate_model(
    model,
    target: RobotTarget,
    contexts: chex.Array,
    key: chex.PRNGKey,
    *,
    samples_per_target: int,
    refine_fn=None,
    num_reference: int | None = None,
    mmd_targets: int = 100,
    coverage_targets: int = 50,
    coverage_reference: int = 1000,
    cluster_radius: float = 1.0,
    cluster_min_fraction: float = 0.02,
    latency: bool = True,
    return_solutions: bool = False,
) -> dict | tuple[dict, Solutions]:
    """All metrics of docs/math.md §9 for one model on one test set, as a flat JSON-ready dict.

    Args:
        model: a `SamplingModel` (see the module docstring).
        target: the robot target the contexts belong to.
        contexts: (T, d_c) test contexts.
        key: PRNG key (sampling, reference seeds, latency, coverage); same key, same numbers.
        samples_per_target: n samples per context.
        refine_fn: `refine.refine`-like function; None skips refined success, MMD and coverage.
        num_reference: random seeds per target for the MMD reference solutions (default n).
        mmd_targets: MMD uses the first this-many test targets (IKFlow used 100).
        coverage_targets: coverage distances use the first this-many test targets (0: no
            coverage metrics).
        coverage_reference: random seeds per target for the coverage reference set (N_ref).
        cluster_radius: joint-space radius (rad) of the greedy clustering.
        cluster_min_fraction: clusters smaller than this share of n are not counted.
        latency: also time sampling (`latency_metrics`).
        return_solutions: also return the `Solutions` the metrics were computed from.

    Returns:
        Keys (bracketed ones only where they apply): num_targets, samples_per_target,
        position_error_{mean,median,p95}_mm (+ _nonfinite_fraction),
        [orientation_error_{mean,median,p95}_deg], success_rate_raw (< 1 cm [and 2 deg]),
        joint_limit_violation_percent, [elbo, entropy] (nats), mean_pairwise_joint_distance,
        clusters_{mean,median}, cluster_radius, cluster_min_size, [success_rate_refined (< 1 mm
        [and 0.1 deg]), success_rate_refined_0p1mm, refined_position_error_*_mm, mmd,
        mmd_uniform_baseline, mmd_num_targets, reference_converged_fraction, [coverage_distance,
        coverage_distance_restarts, coverage_ratio, converged_fraction_{5,30}it,
        coverage_num_targets, coverage_num_reference, coverage_samples,
        coverage_reference_size_mean, coverage_targets_without_{model,restart}_solution]
        (`coverage_metrics`)], [num_parameters],
        [active_components_{mean,min,max}, num_active_slots, mode_position_error_{mean,
        median}_mm, [mode_orientation_error_{mean,median}_deg]], [latency_1x2000_ms,
        latency_1000x250_ms]. With `return_solutions`, the tuple (metrics, solutions).
        The refinement metrics (refined success, MMD, coverage) need `refine_fn` and a target
        whose x is the robot's joint vector (`can_refine`): none for TALOS (whole body).

    Raises:
        TypeError: if the model is not a `SamplingModel` or the target not a `RobotTarget`.
    """
    if not isinstance(model, SamplingModel):
        raise TypeError(f"evaluate_model needs a SamplingModel, got {type(model).__name__}")
    if not isinstance(target, RobotTarget):
        raise TypeError(
            f"evaluate_model needs a robot target (RobotTarget: IK or TALOS), got "
            f"{type(target).__name__} {target.name!r}"
        )
    contexts = target.check_contexts(jnp.asarray(contexts))
    key_sample, key_ref, key_latency = jax.random.split(key, 3)
    solutions = sample_solutions(model, target, contexts, key_sample, samples_per_target)
    out = {"num_targets": int(contexts.shape[0]), "samples_per_target": int(samples_per_target)}
    out.update(accuracy_metrics(target, solutions))
    out.update(diversity_metrics(target, solutions, cluster_radius, cluster_min_fraction))
    if refine_fn is not None and can_refine(target):
        num_reference = num_reference or samples_per_target
        out.update(
            refinement_metrics(target, solutions, key_ref, refine_fn, num_reference, mmd_targets)
        )
        if coverage_targets > 0:
            # fold_in: a new stream that leaves the three above (and so the MMD) unchanged.
            key_coverage = jax.random.fold_in(key, 3)
            out.update(
                coverage_metrics(
                    target, solutions, key_coverage, refine_fn, coverage_reference, coverage_targets
                )
            )
    out.update(model_metrics(model, contexts))
    out.update(mode_metrics(model, target, contexts))
    if latency:
        out.update(latency_metrics(model, contexts, key_latency))
    return (out, solutions) if return_solutions else out
