"""Levenberg-Marquardt refinement: accuracy on Panda, joint limits, shapes, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avips_jax import kinematics, rotations
from avips_jax.refine import refine

pytestmark = pytest.mark.usefixtures("fast_compiles")

ROBOT = kinematics.load_robot("panda")


def _problem(n, seed, noise=0.2):
    """Targets FK(q*) for q* uniform in the limits; starts q* + N(0, noise) clamped."""
    key_q, key_n = jax.random.split(jax.random.key(seed))
    q_star = jax.random.uniform(key_q, (n, 7), minval=ROBOT.lower, maxval=ROBOT.upper)
    start = jnp.clip(
        q_star + noise * jax.random.normal(key_n, q_star.shape), ROBOT.lower, ROBOT.upper
    )
    return start, ROBOT.end_effector_pose(q_star)


def _errors(q, pose):
    reached = ROBOT.end_effector_pose(q)
    pos = np.linalg.norm(np.asarray(reached[..., :3, 3] - pose[..., :3, 3]), axis=-1)
    ang = np.degrees(np.asarray(rotations.geodesic_angle(reached[..., :3, :3], pose[..., :3, :3])))
    return pos, ang


def _inside_limits(q):
    q = np.asarray(q)
    return bool(np.all((q >= ROBOT.lower.astype(q.dtype)) & (q <= ROBOT.upper.astype(q.dtype))))


def test_position_refinement_reaches_a_tenth_of_a_millimetre():
    start, pose = _problem(1000, seed=0)
    start_err, _ = _errors(start, pose)
    q = refine(ROBOT, start, pose[:, :3, 3])
    assert q.shape == (1000, 7) and q.dtype == jnp.float32
    err, _ = _errors(q, pose)
    assert np.median(start_err) > 0.05  # the starts are centimetres off
    assert np.mean(err < 1e-4) >= 0.99, np.sort(err)[-20:]
    assert _inside_limits(q)


def test_pose_refinement_reaches_position_and_orientation():
    start, pose = _problem(500, seed=1)
    q = refine(ROBOT, start, pose[:, :3, 3], pose[:, :3, :3])
    err, angle = _errors(q, pose)
    assert np.mean((err < 1e-4) & (angle < 0.1)) >= 0.97, (np.sort(err)[-10:], np.sort(angle)[-10:])
    assert _inside_limits(q)


def test_shapes_broadcast_and_match_the_flat_call():
    start, pose = _problem(20, seed=2)
    flat = refine(ROBOT, start, pose[:, :3, 3], num_iterations=5)
    grid = refine(
        ROBOT, start.reshape(2, 10, 7), pose[:, :3, 3].reshape(2, 10, 3), num_iterations=5
    )
    assert grid.shape == (2, 10, 7)
    np.testing.assert_allclose(grid.reshape(20, 7), flat, atol=1e-6)
    # One start, many targets: (7,) against (20, 3) -> (20, 7), the same as tiling the start.
    one = refine(ROBOT, start[0], pose[:, :3, 3], num_iterations=5)
    assert one.shape == (20, 7)
    same = refine(ROBOT, jnp.tile(start[:1], (20, 1)), pose[:, :3, 3], num_iterations=5)
    np.testing.assert_allclose(one, same, atol=1e-6)
    # One rotation for every sample: (3, 3) broadcasts against (20, 7).
    posed = refine(ROBOT, start, pose[:, :3, 3], jnp.eye(3), num_iterations=5)
    assert posed.shape == (20, 7)


def test_never_worse_than_the_start_and_finite_for_unreachable_targets():
    start, pose = _problem(20, seed=3)
    far = pose[:, :3, 3] * 3.0  # mostly outside the 0.986 m reach
    q = refine(ROBOT, start, far, num_iterations=10)
    assert np.all(np.isfinite(np.asarray(q)))
    before = np.linalg.norm(np.asarray(ROBOT.end_effector_pose(start)[:, :3, 3] - far), axis=1)
    after = np.linalg.norm(np.asarray(ROBOT.end_effector_pose(q)[:, :3, 3] - far), axis=1)
    assert np.all(after <= before + 1e-6)
    assert _inside_limits(q)


def test_clamp_projects_starts_outside_the_limits():
    start, pose = _problem(20, seed=4)
    outside = start.at[:, 3].set(1.0)  # panda_joint4 must stay below -0.0698
    q = refine(ROBOT, outside, pose[:, :3, 3], num_iterations=5)
    assert _inside_limits(q)
    free = refine(ROBOT, outside, pose[:, :3, 3], num_iterations=0, clamp=False)
    np.testing.assert_array_equal(free, outside)


def test_runs_under_jit_and_in_float64():
    start, pose = _problem(20, seed=5)
    jitted = jax.jit(lambda q0, p: refine(ROBOT, q0, p, num_iterations=5))
    np.testing.assert_allclose(
        jitted(start, pose[:, :3, 3]),
        refine(ROBOT, start, pose[:, :3, 3], num_iterations=5),
        atol=1e-6,
    )
    with jax.enable_x64(True):
        q64 = refine(ROBOT, np.asarray(start, np.float64), np.asarray(pose[:, :3, 3], np.float64))
        assert q64.dtype == jnp.float64
        err = np.linalg.norm(np.asarray(ROBOT.end_effector_pose(q64)[:, :3, 3]) - np.asarray(
            pose[:, :3, 3], np.float64), axis=1)  # fmt: skip
    assert np.median(err) < 1e-9


def test_bad_shapes_raise_value_errors():
    with pytest.raises(ValueError, match=r"q0 must have shape \(\.\.\., 7\), got \(4, 6\)"):
        refine(ROBOT, jnp.zeros((4, 6)), jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"position must have shape \(\.\.\., 3\), got \(4, 7\)"):
        refine(ROBOT, jnp.zeros((4, 7)), jnp.zeros((4, 7)))
    with pytest.raises(ValueError, match=r"rotation must have shape \(\.\.\., 3, 3\)"):
        refine(ROBOT, jnp.zeros((4, 7)), jnp.zeros((4, 3)), jnp.zeros((4, 4)))
    with pytest.raises(ValueError, match="do not broadcast"):
        refine(ROBOT, jnp.zeros((4, 7)), jnp.zeros((5, 3)))
