"""The robot IK target (position and pose contexts) against pinocchio + scipy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.spatial.transform import Rotation

from avips_jax import kinematics, targets
from avips_jax.targets import WorkspaceError, ik
from tests.kinematics import references

pytestmark = pytest.mark.usefixtures("fast_compiles")


def _reference_log_prob(robot_name, q, c, context, pos_std=0.01, rot_std=0.1, lim_std=0.05):
    """log p(q | c) from pinocchio's FK, scipy's normal CDF/pdf and scipy rotations."""
    robot = kinematics.load_robot(robot_name)
    pose = references.pin_reference(robot_name).poses(q, [robot.end_effector])[0]
    prior = np.sum(
        stats.norm.logcdf((q - robot.lower) / lim_std)
        + stats.norm.logcdf((robot.upper - q) / lim_std)
    )
    lik = np.sum(stats.norm.logpdf(pose[:3, 3], c[:3], pos_std))
    if context == "pose":
        w, x, y, z = c[3:]
        angle = (
            Rotation.from_quat([x, y, z, w]).inv() * Rotation.from_matrix(pose[:3, :3])
        ).magnitude()
        # -(1 - cos angle) / s^2 plus the normaliser of a 3-D Gaussian with std s.
        lik += -(1 - np.cos(angle)) / rot_std**2 - 3 * np.log(rot_std) - 1.5 * np.log(2 * np.pi)
    return prior + lik


@pytest.mark.parametrize(
    "robot_name, context", [("panda", "position"), ("panda", "pose"), ("valkyrie", "pose")]
)
def test_log_prob_matches_pinocchio_reference(robot_name, context):
    target = targets.make_target("ik", robot_name=robot_name, context=context)
    robot = target.robot
    rng = np.random.default_rng(0)
    # Inside, at and beyond the limits (up to 0.3 rad), against near and far contexts.
    span = robot.upper - robot.lower
    q = rng.uniform(robot.lower - 0.1 * span, robot.upper + 0.1 * span, (6, robot.dof))
    with jax.enable_x64(True):
        c = np.array(target.contexts_from_joints(q[::-1] + 0.01))
        c[0, :3] = np.asarray(target.contexts_from_joints(q[0]))[:3] + [0.003, -0.002, 0.001]
        got = np.asarray(target.log_prob(q, c))
    ref = [_reference_log_prob(robot_name, q[i], c[i], context) for i in range(6)]
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-8)


def test_joint_prior_matches_scipy_logcdf_far_outside():
    target = ik.IKTarget(limit_std=0.07)
    lower, upper = target.lower, target.upper
    q = np.stack([lower - 2.0, upper + 1.0, 0.5 * (lower + upper), lower, upper + 0.01])
    expected = np.sum(
        stats.norm.logcdf((q - lower) / 0.07) + stats.norm.logcdf((upper - q) / 0.07), axis=-1
    )
    with jax.enable_x64(True):
        got = np.asarray(target.joint_prior(jnp.asarray(q)))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert np.all(np.isfinite(got)) and got[0] < -2800  # log_ndtr stays finite at z = -29


def test_log_prob_float32_batched_shapes_match_pointwise():
    """The train step's layout: x (S, B, K, d) against c (1, B, 1, d_c)."""
    target = ik.IKTarget(context="pose")
    key_x, key_c = jax.random.split(jax.random.key(1))
    x = jax.random.uniform(key_x, (3, 4, 2, 7), minval=target.lower, maxval=target.upper)
    c = target.sample_contexts(key_c, 4)
    got = target.log_prob(x, c[None, :, None, :])
    assert got.shape == (3, 4, 2) and got.dtype == jnp.float32
    single = jax.jit(target.log_prob)  # one point at a time, compiled once
    loop = [[[single(x[s, b, k], c[b]) for k in range(2)] for b in range(4)] for s in range(3)]
    np.testing.assert_allclose(got, loop, rtol=1e-5)
    with jax.enable_x64(True):
        ref = target.log_prob(np.asarray(x, np.float64), np.asarray(c, np.float64)[None, :, None])
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=0.05)


@pytest.mark.parametrize("context", ["position", "pose"])
def test_gradients_are_finite(context):
    target = ik.IKTarget(context=context)
    q = jax.random.uniform(jax.random.key(2), (16, 7), minval=-4.0, maxval=4.0)
    c = target.contexts_from_joints(jnp.clip(q, target.lower, target.upper))
    c = c.at[8:].set(c[:8])  # exact solutions (first half) and far-off ones (second half)
    grad = jax.grad(lambda x: jnp.sum(target.log_prob(x, c)))(q)
    assert np.all(np.isfinite(grad))


def test_log_prob_is_maximal_at_exact_solution_along_a_line():
    target = ik.IKTarget(context="pose")
    q = jnp.asarray(np.random.default_rng(3).uniform(target.lower + 0.3, target.upper - 0.3))
    c = target.contexts_from_joints(q)
    direction = jax.random.normal(jax.random.key(3), (7,))
    ts = jnp.linspace(-0.05, 0.05, 11)
    with jax.enable_x64(True):
        values = np.asarray(target.log_prob(q.astype(jnp.float64) + ts[:, None] * direction, c))
    assert int(np.argmax(values)) == 5


def test_contexts_from_joints_match_pinocchio_and_quaternion_convention():
    target = ik.IKTarget(robot_name="atlas", context="pose")
    q = references.random_q(target.robot, 30, seed=4)
    with jax.enable_x64(True):
        c = np.asarray(target.contexts_from_joints(q))
    pin = references.pin_reference("atlas")
    poses = np.stack([pin.poses(qi, [target.robot.end_effector])[0] for qi in q])
    np.testing.assert_allclose(c[:, :3], poses[:, :3, 3], atol=1e-12)
    assert np.all(c[:, 3] >= 0)
    np.testing.assert_allclose(np.linalg.norm(c[:, 3:], axis=1), 1.0, atol=1e-12)
    xyzw = Rotation.from_matrix(poses[:, :3, :3]).as_quat()
    ref = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1)
    ref *= np.sign(ref[:, :1])  # w >= 0
    np.testing.assert_allclose(c[:, 3:], ref, atol=1e-12)


@pytest.mark.parametrize("context", ["position", "pose"])
def test_sampled_contexts_are_fk_of_joints_in_limits(context):
    target = ik.IKTarget(context=context)
    key = jax.random.key(5)
    c = target.sample_contexts(key, 64)
    assert c.shape == (64, target.context_dim) and c.dtype == jnp.float32
    q = jax.random.uniform(key, (64, 7), jnp.float32, target.lower, target.upper)
    np.testing.assert_allclose(c, target.contexts_from_joints(q), atol=1e-6)
    errors = target.position_error(q, c)
    assert float(jnp.max(errors)) < 1e-6
    if context == "pose":
        assert float(jnp.max(target.orientation_error(q, c))) < 1e-3
        assert np.all(np.asarray(c[:, 3]) >= 0)
    target.check_reachable(c)  # every sampled context passes the workspace test


def test_sampling_box_maps_wide_ranges_to_pi():
    robot = kinematics.load_robot_from_string(
        '<robot name="r"><link name="a"/><link name="b"/><joint name="j" type="revolute">'
        '<parent link="a"/><child link="b"/><axis xyz="0 0 1"/>'
        '<limit lower="-4" upper="4"/></joint></robot>'
    )
    lower, upper = ik.sampling_box(robot)
    np.testing.assert_array_equal(lower, [-np.pi])
    np.testing.assert_array_equal(upper, [np.pi])


def test_orientation_error_is_exact_on_known_rotations():
    target = ik.IKTarget(context="pose")
    q = np.random.default_rng(6).uniform(target.lower, target.upper)
    angles = np.array([0.0, 1e-4, 0.2, 1.5, 3.0, np.pi - 1e-4])
    with jax.enable_x64(True):
        pose = np.asarray(target.robot.end_effector_pose(q))
        axis = np.array([0.3, 0.9, -0.2]) / np.linalg.norm([0.3, 0.9, -0.2])
        rot = Rotation.from_matrix(pose[:3, :3]) * Rotation.from_rotvec(angles[:, None] * axis)
        xyzw = rot.as_quat()
        c = np.concatenate([np.tile(pose[:3, 3], (6, 1)), xyzw[:, 3:], xyzw[:, :3]], axis=1)
        got = np.asarray(target.orientation_error(q, c))
        # -q is the same rotation: the error does not depend on the sign.
        c[:, 3:] *= -1
        flipped = np.asarray(target.orientation_error(q, c))
    np.testing.assert_allclose(got, angles, atol=1e-12, rtol=0)
    np.testing.assert_allclose(flipped, angles, atol=1e-12, rtol=0)


def test_position_error_and_skeleton():
    target = ik.IKTarget()
    q = jnp.asarray(references.random_q(target.robot, 5, seed=7), jnp.float32)
    c = target.contexts_from_joints(q) + jnp.array([0.003, 0.0, -0.004])
    np.testing.assert_allclose(target.position_error(q, c), 0.005, rtol=1e-3)
    points = target.skeleton_points(q)
    assert points.shape == (5, len(target.skeleton_links), 3)
    np.testing.assert_allclose(points[:, -1], target.contexts_from_joints(q), atol=1e-6)
    np.testing.assert_allclose(points[:, 0], 0.0, atol=1e-7)  # panda_link0 is the root
    edges = target.skeleton_edges
    assert len(edges) == len(target.skeleton_links) - 1  # a serial chain is a tree
    assert sorted(child for _, child in edges) == list(range(1, len(target.skeleton_links)))
    np.testing.assert_array_equal(target.joints(q), q)


def test_workspace_radius_from_the_tree():
    target = ik.IKTarget()
    centre, radius = target.workspace
    # By hand from the Panda joint origins (docs/robots.md §2.1): link offsets after joint 1.
    expected = 0.316 + 0.0825 + math.hypot(0.0825, 0.384) + 0.088 + 0.107
    assert radius == pytest.approx(expected, abs=1e-12)
    np.testing.assert_allclose(centre, [0, 0, 0.333])
    # The bound holds and is not absurdly loose: random configurations come close to it.
    q = jax.random.uniform(jax.random.key(8), (20000, 7), minval=target.lower, maxval=target.upper)
    dist = np.linalg.norm(np.asarray(target.contexts_from_joints(q)) - centre, axis=1)
    assert dist.max() <= radius
    assert dist.max() > 0.85 * radius


@pytest.mark.parametrize("name", ["valkyrie", "valkyrie_arm", "atlas_arm"])
def test_workspace_bound_holds_for_other_robots(name):
    target = ik.IKTarget(robot_name=name)
    centre, radius = target.workspace
    q = jax.random.uniform(jax.random.key(9), (4000, target.dim), minval=target.lower,
                           maxval=target.upper)  # fmt: skip
    dist = np.linalg.norm(np.asarray(target.contexts_from_joints(q)) - centre, axis=1)
    assert radius >= dist.max() > 0.7 * radius


def test_check_reachable_raises_workspace_error_naming_the_reach():
    target = ik.IKTarget()
    ok = target.check_reachable([[0.4, 0.1, 0.6], [0.0, 0.0, 1.3]])
    assert ok.shape == (2, 3)
    with pytest.raises(WorkspaceError, match=r"\[1\.5, 0\.0, 0\.6\].*reaches at most 0\.986"):
        target.check_reachable([[0.4, 0.1, 0.6], [1.5, 0.0, 0.6]])
    assert issubclass(WorkspaceError, ValueError)
    with pytest.raises(ValueError, match="NaN"):
        target.check_reachable([np.nan, 0.0, 0.5])
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3\), got \(4,\)"):
        target.check_reachable([0.1, 0.2, 0.3, 0.4])
    pose = ik.IKTarget(context="pose")
    pose.check_reachable([0.4, 0.1, 0.6, 0.7071, 0.7071, 0.0, 0.0])
    with pytest.raises(ValueError, match="unit quaternion"):
        pose.check_reachable([0.4, 0.1, 0.6, 1.0, 1.0, 0.0, 0.0])


def test_bad_settings_and_shapes_raise_clear_errors():
    with pytest.raises(kinematics.UnknownRobotError, match="unknown robot 'pandaa'"):
        targets.make_target("ik", robot_name="pandaa")
    with pytest.raises(ValueError, match="context must be one of"):
        ik.IKTarget(context="orientation")
    with pytest.raises(ValueError, match="position_std must be a finite number > 0"):
        ik.IKTarget(position_std=0.0)
    target = ik.IKTarget()
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 7\), got \(2, 6\)"):
        target.log_prob(jnp.zeros((2, 6)), jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"c must have shape \(\.\.\., 3\), got \(2, 7\)"):
        target.log_prob(jnp.zeros((2, 7)), jnp.zeros((2, 7)))
    with pytest.raises(ValueError, match="do not broadcast"):
        target.log_prob(jnp.zeros((2, 7)), jnp.zeros((3, 3)))
    with pytest.raises(ValueError, match="needs context='pose'"):
        target.orientation_error(jnp.zeros(7), jnp.zeros(3))


def test_target_is_hashable_and_registered():
    a, b = ik.IKTarget(), targets.make_target("ik", robot_name="panda")
    assert a == b and hash(a) == hash(b)
    assert a.robot is b.robot  # one cached Robot per name
    pose = targets.make_target("ik", robot_name="valkyrie_arm", context="pose")
    assert (pose.dim, pose.context_dim) == (4, 7)
    np.testing.assert_array_equal(pose.lower, kinematics.load_robot("valkyrie_arm").lower)


# pose is slow (CI's budget): test_refine.py refines poses and test_solver.py the pose solver.
@pytest.mark.parametrize("context", ["position", pytest.param("pose", marks=pytest.mark.slow)])
def test_refine_points_reaches_the_context_from_nearby_joints(context):
    target = ik.IKTarget(robot_name="panda", context=context)
    lower, upper = target.lower, target.upper
    u = jax.random.uniform(jax.random.PRNGKey(0), (3, 7))
    q_true = (lower + upper) / 2 + 0.5 * (upper - lower) * (u - 0.5)  # well inside the limits
    c = target.contexts_from_joints(q_true)  # (3, d_c)
    q0 = q_true[None] + 0.05 * jax.random.normal(jax.random.PRNGKey(1), (2, 3, 7))
    q = target.refine_points(q0, c[None], 30)  # (2, 3, 7): broadcast over the leading axis
    assert q.shape == (2, 3, 7) and type(target).can_refine_points
    assert float(jnp.max(target.position_error(q, c[None]))) < 1e-4
    assert float(jnp.max(target.position_error(q0, c[None]))) > 1e-3
    if context == "pose":
        assert float(jnp.max(target.orientation_error(q, c[None]))) < 1e-3


def test_robot_targets_declare_what_the_evaluation_reads():
    panda = targets.make_target("ik", robot_name="panda", context="pose", position_std=0.002)
    talos = targets.make_target("talos", gripper_std=0.03)
    for target in (panda, talos):
        assert isinstance(target, targets.RobotTarget)
    assert (panda.context, panda.goal_position_std, panda.has_joint_contexts) == (
        "pose",
        0.002,
        True,
    )
    assert (talos.context, talos.goal_position_std, talos.has_joint_contexts) == (
        "position",
        0.03,
        False,
    )
    with pytest.raises(NotImplementedError, match="contexts_from_joints"):
        talos.contexts_from_joints(np.zeros((1, 28)))
    for name in ("planar", "moving_gmm"):
        assert not isinstance(targets.make_target(name), targets.RobotTarget)
