"""evaluate_model end to end on a planar arm dressed as an IK target (tests/ik_stub.py) and on
the Panda IK target, with untrained models and with a model that samples exact IK solutions; the
coverage metrics on a 2-link planar robot, whose goals have exactly two IK solutions."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avips_jax import fit, ik_evaluation, ik_metrics, refine
from avips_jax import model as model_lib
from avips_jax.targets import make_target
from avips_jax.targets.ik import IKTarget
from experiments.configs import planar as planar_configs
from tests import ik_stub

pytestmark = pytest.mark.usefixtures("fast_compiles")

T, N = 6, 24


def _small(config):
    config.model.num_components = 4
    config.model.initial_components = 3
    config.model.component_hidden = (8,)
    config.model.gate_hidden = (8,)
    return config


def _initial_model(config, target):
    """The untrained model of a config (no train step is compiled)."""
    _, module, _, state, _ = fit.build(config, target)
    return model_lib.AmortizedGMM.from_train_state(state, module, target.context_dim)


def _stub_refine(target):
    """The stub's refinement with refine.py's `num_iterations` keyword (default 40)."""
    by_iterations = {}

    def refine_fn(robot, q0, position, rotation=None, *, num_iterations=40):
        if num_iterations not in by_iterations:
            by_iterations[num_iterations] = ik_stub.make_refine(target, num_iterations)
        return by_iterations[num_iterations](robot, q0, position, rotation)

    return refine_fn


@pytest.fixture(scope="module")
def stub():
    target = ik_stub.make_stub()
    model = _initial_model(_small(planar_configs.get_config("3")), target)
    contexts = target.sample_contexts(jax.random.PRNGKey(1), T)
    return target, model, contexts, _stub_refine(target)


def test_mode_errors_are_those_of_each_contexts_heaviest_mean(stub):
    target, model, contexts, _ = stub
    metrics = ik_evaluation.mode_metrics(model, target, contexts)
    params = model.gmm_params(contexts)
    w = np.asarray(model.weights(contexts))
    modes = np.asarray(params.means)[np.arange(T), np.argmax(w, axis=1)]  # (T, d)
    errors = np.asarray(target.position_error(modes, contexts))
    assert errors.shape == (T,) and np.ptp(errors) > 0
    assert metrics["mode_position_error_mean_mm"] == pytest.approx(1e3 * errors.mean(), rel=1e-5)
    assert metrics["mode_position_error_median_mm"] == pytest.approx(
        1e3 * np.median(errors), rel=1e-5
    )
    assert "mode_orientation_error_mean_deg" not in metrics  # position contexts
    # A model without mixture parameters has no modes to report.
    assert ik_evaluation.mode_metrics(ExactSampler(target, None), target, contexts) == {}


@dataclasses.dataclass(frozen=True)
class ExactSampler(ik_stub.StubModel):
    """A 'model' whose samples are converged refinements of uniform seeds: the reference
    distribution itself (no log_prob, no weights)."""

    target: ik_stub.PlanarIKStub
    refine: object

    @property
    def dim(self):
        return self.target.dim

    def sample(self, key, contexts, n):
        seeds = jax.random.uniform(
            key, (len(contexts), n, self.target.dim), minval=-np.pi, maxval=np.pi
        )
        return self.refine(None, seeds, jnp.asarray(contexts)[:, None])


def test_metrics_agree_with_the_returned_samples(stub):
    target, model, contexts, refine = stub
    metrics, sol = ik_evaluation.evaluate_model(
        model,
        target,
        contexts,
        jax.random.PRNGKey(0),
        samples_per_target=N,
        refine_fn=refine,
        mmd_targets=3,
        latency=True,
        return_solutions=True,
    )
    assert sol.x.shape == (T, N, 3) and sol.components.shape == (T, N)
    errors = np.asarray(target.position_error(sol.x, contexts[:, None]))
    np.testing.assert_allclose(sol.position_error, errors, rtol=1e-6)
    assert metrics["position_error_mean_mm"] == pytest.approx(1e3 * errors.mean(), rel=1e-5)
    assert metrics["success_rate_raw"] == pytest.approx(np.mean(errors < 0.01))
    log_q = np.asarray(model.log_prob(sol.x, contexts))
    log_p = np.asarray(target.log_prob(sol.x, contexts[:, None]))
    assert metrics["elbo"] == pytest.approx(np.mean(log_p - log_q), rel=1e-5)
    assert metrics["entropy"] == pytest.approx(-np.mean(log_q), rel=1e-5)
    assert metrics["num_parameters"] == model.num_parameters
    assert metrics["active_components_max"] <= 3
    # The stub's refinement always converges: every refined sample is within 1 mm.
    assert metrics["success_rate_refined"] == 1.0
    assert metrics["reference_converged_fraction"] == 1.0
    assert metrics["mmd_num_targets"] == 3 and metrics["mmd"] > 0
    # Coverage on all T (< 50) targets; the stub's 40-iteration refinement always converges.
    assert metrics["coverage_num_targets"] == T and metrics["coverage_samples"] == N
    assert metrics["coverage_num_reference"] == 1000
    assert metrics["coverage_reference_size_mean"] == 1000.0
    assert metrics["converged_fraction_30it"] == 1.0 and metrics["coverage_distance"] > 0
    assert "orientation_error_mean_deg" not in metrics
    assert metrics["latency_1x2000_ms"] > 0 and metrics["latency_1000x250_ms"] > 0


def test_a_wider_latent_scale_spreads_the_samples_and_keeps_the_density_figures(stub):
    target, model, contexts, _ = stub
    key = jax.random.PRNGKey(0)
    sol1 = ik_evaluation.sample_solutions(model, target, contexts, key, N)
    sol2 = ik_evaluation.sample_solutions(model.with_latent_scale(2.0), target, contexts, key, N)
    means = np.asarray(model.gmm_params(contexts).means)  # (T, K, d)
    picked = np.take_along_axis(means, sol1.components[..., None], axis=1)
    np.testing.assert_array_equal(sol2.components, sol1.components)
    np.testing.assert_allclose(sol2.x - picked, 2.0 * (sol1.x - picked), rtol=1e-4, atol=1e-5)
    # ELBO terms come from a separate draw of q itself: log q of those points, not of the wide
    # samples (which q finds much less likely).
    density = model.with_latent_scale(1.0)
    x_q = density.sample(jax.random.fold_in(key, 1), contexts, N)
    np.testing.assert_allclose(sol2.log_q, density.log_prob(x_q, contexts), rtol=1e-6)
    np.testing.assert_allclose(
        sol2.log_p, target.log_prob(x_q, jnp.asarray(contexts)[:, None]), rtol=1e-6
    )
    assert abs(np.mean(sol2.log_q) - np.mean(sol1.log_q)) < 0.5 * abs(
        np.mean(model.log_prob(sol2.x, contexts)) - np.mean(sol1.log_q)
    )


def test_exact_sampler_is_accurate_and_close_to_the_reference(stub):
    target, _, contexts, refine = stub
    metrics = ik_evaluation.evaluate_model(
        ExactSampler(target, refine),
        target,
        contexts,
        jax.random.PRNGKey(0),
        samples_per_target=64,
        refine_fn=refine,
        mmd_targets=T,
        latency=False,
    )
    assert metrics["success_rate_raw"] == 1.0
    assert metrics["position_error_p95_mm"] < 1e-2
    assert metrics["joint_limit_violation_percent"] == 0.0
    # Same distribution as the reference: far smaller MMD than uniform joints.
    assert metrics["mmd"] < 0.2 * metrics["mmd_uniform_baseline"], metrics
    # ... and it covers the solution set as well as as many random restarts do.
    assert 0.7 < metrics["coverage_ratio"] < 1.4, metrics
    assert metrics["converged_fraction_5it"] == 1.0  # exact solutions stay converged
    assert metrics["clusters_mean"] >= 1
    assert "elbo" not in metrics and metrics["num_parameters"] == 0
    assert "active_components_mean" not in metrics  # not a mixture


def test_wrong_sample_shape_is_refused(stub):
    target, _, contexts, refine = stub

    class Flat(ExactSampler):
        def sample(self, key, contexts, n):
            return super().sample(key, contexts, n)[..., :2]

    with pytest.raises(ValueError, match=r"expected \(6, 8, 3\)"):
        ik_evaluation.evaluate_model(
            Flat(target, refine),
            target,
            contexts,
            jax.random.PRNGKey(0),
            samples_per_target=8,
            latency=False,
        )


@dataclasses.dataclass(frozen=True)
class UniformJoints(ik_stub.StubModel):
    """A 'model' drawing joints uniformly within the limits."""

    lower: tuple
    upper: tuple

    @property
    def dim(self):
        return len(self.lower)

    def sample(self, key, contexts, n):
        shape = (len(contexts), n, len(self.lower))
        return jax.random.uniform(
            key, shape, minval=np.array(self.lower), maxval=np.array(self.upper)
        )


def test_panda_pose_contexts_report_orientation():
    from avips_jax.targets.ik import IKTarget

    target = IKTarget("panda", context="pose")
    model = UniformJoints(tuple(target.lower), tuple(target.upper))
    contexts = jax.jit(target.sample_contexts, static_argnums=1)(jax.random.PRNGKey(2), 4)
    metrics, sol = ik_evaluation.evaluate_model(
        model,
        target,
        contexts,
        jax.random.PRNGKey(0),
        samples_per_target=8,
        latency=False,
        return_solutions=True,
    )
    angles = np.asarray(target.orientation_error(sol.x, contexts[:, None]))
    assert metrics["orientation_error_median_deg"] == pytest.approx(
        np.degrees(np.median(angles)), rel=1e-5
    )
    expected = ik_metrics.success_rate(
        sol.position_error, 0.01, angles, ik_evaluation.SUCCESS_RAW_RAD
    )
    assert metrics["success_rate_raw"] == expected
    assert metrics["joint_limit_violation_percent"] == 0.0
    assert sol.components is None and sol.log_q is None
    # The rotation of a context built from FK is the FK rotation.
    q = jnp.linspace(-0.5, 0.5, 7)
    c0 = target.contexts_from_joints(q[None])
    position, rotation = ik_evaluation.split_contexts(target, c0)
    pose = target.robot.end_effector_pose(q)
    np.testing.assert_allclose(position[0], pose[:3, 3], atol=1e-6)
    np.testing.assert_allclose(rotation[0], pose[:3, :3], atol=1e-5)


def test_panda_pose_mode_errors_include_the_orientation():
    from experiments.configs import panda_pose

    config = _small(panda_pose.get_config("quick"))
    target = fit.build(config)[0]
    model = _initial_model(config, target)
    contexts = jax.jit(target.sample_contexts, static_argnums=1)(jax.random.PRNGKey(2), 4)
    metrics = ik_evaluation.mode_metrics(model, target, contexts)
    w = np.asarray(model.weights(contexts))
    modes = np.asarray(model.gmm_params(contexts).means)[np.arange(4), np.argmax(w, axis=1)]
    angles = np.asarray(target.orientation_error(modes, contexts))
    assert metrics["mode_orientation_error_mean_deg"] == pytest.approx(
        np.degrees(np.mean(angles)), rel=1e-5
    )


# --- coverage on a 2-link planar arm: every goal has exactly two IK solutions ----------------

PLANAR = IKTarget("planar_2")  # two 0.5 m links, revolute z joints, limits [-pi, pi]
COVERAGE_T, COVERAGE_N, COVERAGE_REF = 16, 4, 64


def _two_solutions(num_targets: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2) elbow-up and elbow-down joint vectors of the same goals, both well inside the
    limits: with equal links, (a, b) and (a + b, -b) reach the same point."""
    rng = np.random.default_rng(0)
    a = rng.uniform(-1.2, 1.2, num_targets)
    b = rng.uniform(0.8, 1.6, num_targets) * rng.choice([-1.0, 1.0], num_targets)
    return np.stack([a, b], 1).astype(np.float32), np.stack([a + b, -b], 1).astype(np.float32)


class NearSolutions(ik_stub.StubModel):
    """A 'model' whose samples are the given solutions (T, 2) plus Gaussian noise, the n samples
    taking the solution sets in turn."""

    dim = 2

    def __init__(self, *solutions: np.ndarray, noise: float = 0.05):
        self.solutions, self.noise = jnp.asarray(np.stack(solutions)), noise  # (B, T, 2)

    def sample(self, key, contexts, n):
        x = jnp.moveaxis(self.solutions[jnp.arange(n) % len(self.solutions)], 0, 1)  # (T, n, 2)
        return x + self.noise * jax.random.normal(key, x.shape)


@pytest.fixture(scope="module")
def two_solutions():
    up, down = _two_solutions(COVERAGE_T)
    contexts = np.asarray(PLANAR.robot.end_effector_pose(jnp.asarray(up))[:, :3, 3])
    np.testing.assert_allclose(  # the two solutions reach the same goal
        PLANAR.robot.end_effector_pose(jnp.asarray(down))[:, :3, 3], contexts, atol=1e-6
    )

    def coverage(model, key=0):
        return ik_evaluation.evaluate_model(
            model,
            PLANAR,
            contexts,
            jax.random.PRNGKey(key),
            samples_per_target=COVERAGE_N,
            refine_fn=refine.refine,
            coverage_reference=COVERAGE_REF,
            latency=False,
        )

    return up, down, coverage


def test_coverage_of_one_solution_is_worse_than_restarts_and_of_both_is_exact(two_solutions):
    up, down, coverage = two_solutions
    gap = float(np.mean(np.linalg.norm(up - down, axis=1)))  # ~2.7 rad between the branches
    one, both = coverage(NearSolutions(up)), coverage(NearSolutions(up, down))
    for m in (one, both):
        assert m["coverage_num_targets"] == COVERAGE_T and m["coverage_samples"] == COVERAGE_N
        assert m["coverage_num_reference"] == COVERAGE_REF
        assert 0.3 * COVERAGE_REF < m["coverage_reference_size_mean"] <= COVERAGE_REF
        assert m["coverage_targets_without_model_solution"] == 0
        assert m["converged_fraction_30it"] == 1.0
    # Only elbow-up samples: the references on the other branch (about half) are `gap` away.
    assert 0.25 * gap < one["coverage_distance"] < 0.75 * gap, one
    # 4 random restarts often miss a branch, but less often than never finding it.
    assert one["coverage_ratio"] > 1.5, one
    # Both branches: every reference has a refined sample on it.
    assert both["coverage_distance"] < 1e-4, both
    assert both["coverage_ratio"] < 1e-2, both
    # The references and restarts are the same for both models (same key).
    assert both["coverage_distance_restarts"] == one["coverage_distance_restarts"]
    # Per joint: one branch has no spread at all; both branches spread like the references.
    assert len(one["coverage_joint_spread_ratio"]) == 2
    assert max(one["coverage_joint_spread_ratio"]) < 1e-3, one
    assert all(0.7 < r < 1.6 for r in both["coverage_joint_spread_ratio"]), both


def test_coverage_metrics_are_seeded(two_solutions):
    up, down, coverage = two_solutions
    model = NearSolutions(up, down, noise=0.5)
    a, b, other = coverage(model), coverage(model), coverage(model, key=1)
    assert a == b
    assert other["coverage_distance_restarts"] != a["coverage_distance_restarts"]


def test_converged_fractions_after_5_and_30_iterations(two_solutions):
    up, down, coverage = two_solutions
    exact = coverage(NearSolutions(up, down, noise=0.0))
    assert exact["converged_fraction_5it"] == 1.0 and exact["converged_fraction_30it"] == 1.0
    # Starts 1.5 rad off in the first joint (still inside its limits): 30 iterations reach the
    # goal, 5 do not yet.
    far = coverage(NearSolutions(up + np.array([1.5, 0.0], np.float32), noise=0.0))
    assert far["converged_fraction_30it"] == 1.0
    assert far["converged_fraction_5it"] < 0.6, far


def test_refuses_a_target_without_a_robot_and_a_model_of_no_known_type(stub):
    target, model, contexts, _ = stub
    with pytest.raises(TypeError, match="robot target"):
        ik_evaluation.evaluate_model(
            model, make_target("planar"), contexts, jax.random.PRNGKey(0), samples_per_target=4
        )

    class Duck:  # has `sample`, but is not a SamplingModel
        def sample(self, key, contexts, n):
            return jnp.zeros((len(contexts), n, target.dim))

    with pytest.raises(TypeError, match="SamplingModel"):
        ik_evaluation.evaluate_model(
            Duck(), target, contexts, jax.random.PRNGKey(0), samples_per_target=4
        )
