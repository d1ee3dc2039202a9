"""The valid (context, configuration) pairs the GAN's discriminator and the ML flow learn from."""

import jax
import numpy as np
import pytest

from avips_jax import targets
from avips_jax.baselines import valid_pairs
from avips_jax.targets import talos_data

pytestmark = pytest.mark.usefixtures("fast_compiles")


def test_ik_pairs_reach_their_contexts():
    target = targets.make_target("ik", robot_name="planar_3")
    contexts, q = valid_pairs.valid_pairs(target, jax.random.PRNGKey(0), 256)
    assert contexts.shape == (256, 3) and q.shape == (256, 3)
    assert contexts.dtype == np.float32 and q.dtype == np.float32
    assert np.all((q >= -np.pi) & (q <= np.pi))
    # Independent FK of the planar arm: links of 1/3 along the cumulative angles.
    phi = np.cumsum(np.asarray(q, np.float64), axis=-1)
    tip = np.stack([np.cos(phi).sum(-1), np.sin(phi).sum(-1)], -1) / 3.0
    np.testing.assert_allclose(contexts[:, :2], tip, atol=1e-5)
    np.testing.assert_allclose(contexts[:, 2], 0.0, atol=1e-6)


@pytest.mark.slow  # 44 s: 1000 Adam steps per posture; tests/targets/test_talos_data.py covers
# the posture optimiser in the default suite
def test_talos_pairs_are_standing_postures_and_their_gripper_positions():
    target = targets.make_target("talos")
    c, q = valid_pairs.valid_pairs(target, jax.random.PRNGKey(0), 12)
    assert c.shape == (12, 3) and q.shape == (12, 34)
    assert np.all(np.asarray(talos_data.stance_checks(target, q)))
    np.testing.assert_allclose(c, target.gripper_position(q), atol=1e-6)
    assert len(np.unique(np.asarray(q)[:, 0])) > 1  # not one posture repeated


def test_targets_without_pairs_are_refused_by_name():
    toy = targets.make_target("moving_gmm")
    assert not valid_pairs.has_valid_pairs(toy)
    assert valid_pairs.has_valid_pairs(targets.make_target("ik", robot_name="planar_3"))
    with pytest.raises(ValueError, match="method 'gan'.*'moving_gmm'.*'gan_no_disc'"):
        valid_pairs.require_valid_pairs(toy, "gan", "gan_no_disc")
    with pytest.raises(ValueError, match="contexts_from_joints"):
        valid_pairs.valid_pairs(toy, jax.random.PRNGKey(0), 4)
    with pytest.raises(ValueError, match="num >= 1"):
        valid_pairs.valid_pairs(toy, jax.random.PRNGKey(0), 0)
