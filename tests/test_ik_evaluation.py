"""evaluate_model end to end on a planar arm dressed as an IK target (tests/ik_stub.py) and on
the Panda IK target, with untrained models and with a model that samples exact IK solutions."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avips_jax import fit, ik_evaluation, ik_metrics
from avips_jax import model as model_lib
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


@pytest.fixture(scope="module")
def stub():
    target = ik_stub.make_stub()
    model = _initial_model(_small(planar_configs.get_config("3")), target)
    contexts = target.sample_contexts(jax.random.PRNGKey(1), T)
    return target, model, contexts, ik_stub.make_refine(target)


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
class ExactSampler:
    """A 'model' whose samples are converged refinements of uniform seeds: the reference
    distribution itself (no log_prob, no weights)."""

    target: ik_stub.PlanarIKStub
    refine: object

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
    assert "orientation_error_mean_deg" not in metrics
    assert metrics["latency_1x2000_ms"] > 0 and metrics["latency_1000x250_ms"] > 0


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
    assert metrics["clusters_mean"] >= 1
    assert "elbo" not in metrics and "num_parameters" not in metrics


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
class UniformJoints:
    """A 'model' drawing joints uniformly within the limits."""

    lower: tuple
    upper: tuple

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
