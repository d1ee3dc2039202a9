"""targets/talos_data.py: optimised TALOS postures are valid stances, random ones are not."""

import jax
import numpy as np
import pytest

from avips_jax import targets
from avips_jax.targets import talos_data

pytestmark = pytest.mark.usefixtures("fast_compiles")  # compile time dominates


@pytest.fixture(scope="module")
def target():
    return targets.make_target("talos")


KEY = jax.random.PRNGKey(5)


@pytest.fixture(scope="module")
def reaching(target):
    """64 postures optimised to stand and reach (one compilation shared by two tests)."""
    return talos_data.valid_postures(target, KEY, 64, steps=600)


@pytest.mark.slow  # a 600-step posture optimisation (~45 s)
def test_optimised_postures_stand_and_reach_spread_contexts(target, reaching):
    x0 = jax.random.uniform(KEY, (64, target.dim), minval=target.lower, maxval=target.upper)
    x, ok = reaching
    assert x.shape == (64, 34) and ok.shape == (64,)
    # Uniform postures fail the checks; optimised ones mostly pass, with far better stance terms.
    assert np.mean(np.asarray(talos_data.stance_checks(target, x0))) < 0.1
    assert np.mean(np.asarray(ok)) >= 0.5
    assert np.all(np.asarray(target.stance_log_prob(x))[ok] > np.max(target.stance_log_prob(x0)))
    np.testing.assert_array_equal(ok, talos_data.stance_checks(target, x))
    # Feet where the stance puts them, checked directly on the sole poses.
    soles = np.asarray(target.world_link_poses(x[ok], ("left_sole_link", "right_sole_link")))
    np.testing.assert_allclose(soles[:, 0, :3, 3] - [-0.02, 0.09, 0.0], 0.0, atol=0.01)
    np.testing.assert_allclose(soles[:, 1, :3, 3] - [-0.02, -0.09, 0.0], 0.0, atol=0.01)
    # The gripper positions (the contexts) are spread, not one posture repeated.
    assert np.all(np.std(np.asarray(target.gripper_position(x[ok])), axis=0) > 0.05)


@pytest.mark.slow  # a second posture optimisation (~30 s)
def test_reaching_postures_cover_the_test_contexts_and_stance_only_ones_do_not(target, reaching):
    prior = np.asarray(target.sample_contexts(jax.random.PRNGKey(6), 4096))

    def reached_mean_gap(postures):
        x, ok = postures
        reached = np.asarray(target.gripper_position(x))[np.asarray(ok)]
        return np.abs(reached.mean(0) - prior.mean(0))

    assert np.all(reached_mean_gap(reaching) < 0.15)
    # Stance-only postures hold the gripper ~0.6 m above the prior's mean height.
    stance_only = talos_data.valid_postures(target, KEY, 64, steps=600, reach=False)
    assert reached_mean_gap(stance_only)[2] > 0.3


def test_gripper_position_is_what_position_error_measures(target):
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 34), minval=target.lower, maxval=target.upper)
    c = target.gripper_position(x)
    np.testing.assert_allclose(target.position_error(x, c), 0.0, atol=1e-6)
    # log p = stance terms + the gripper Gaussian: -3 log(sigma sqrt(2 pi)) at zero distance.
    gripper_peak = -3 * np.log(target.gripper_std * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(
        target.log_prob(x, c) - target.stance_log_prob(x), gripper_peak, rtol=1e-4, atol=1e-3
    )


def test_bad_sizes_are_refused(target):
    with pytest.raises(ValueError, match="n >= 1"):
        talos_data.valid_postures(target, jax.random.PRNGKey(0), 0)
