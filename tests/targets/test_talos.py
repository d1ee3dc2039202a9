"""The TALOS whole-body target against a pinocchio free-flyer + scipy evaluation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pinocchio as pin
import pytest
from scipy import stats
from scipy.spatial.transform import Rotation

from avips_jax import targets
from avips_jax.targets import WorkspaceError, talos
from tests.kinematics import references

pytestmark = pytest.mark.usefixtures("fast_compiles")

FEET = {"left_sole_link": (-0.02, 0.09, 0.0), "right_sole_link": (-0.02, -0.09, 0.0)}


def _reference_log_prob(x, c, com_reference="left_foot"):
    """Terms 1-5 of docs/math.md §8.2 with pinocchio (free-flyer base) and scipy.stats."""
    ref = references.pin_reference("talos", free_flyer=True)
    robot = ref.robot
    q, xyz, rpy = x[:28], x[28:31], x[31:]
    base = np.concatenate([xyz, Rotation.from_euler("xyz", rpy).as_quat()])  # Rz Ry Rx, xyzw
    full = ref.config(q, base)
    pin.forwardKinematics(ref.model, ref.data, full)
    pin.updateFramePlacements(ref.model, ref.data)
    frame = lambda name: ref.data.oMf[ref.model.getFrameId(name)]
    logcdf = stats.norm.logcdf
    total = np.sum(logcdf((q - robot.lower) / 0.05) + logcdf((robot.upper - q) / 0.05))
    com_xy = pin.centerOfMass(ref.model, ref.data, full)[:2]  # counts base_link's mass
    feet_xy = frame("left_sole_link").translation[:2]
    if com_reference == "feet_center":
        feet_xy = 0.5 * (feet_xy + frame("right_sole_link").translation[:2])
    v = com_xy - feet_xy
    total += np.sum(logcdf((v + 0.14) / 0.01) + logcdf((0.14 - v) / 0.01))
    stds = np.array([0.02] * 3 + [0.1] * 9)
    for name, position in FEET.items():
        placement = frame(name)
        f = np.concatenate([placement.translation, placement.rotation.reshape(-1)])
        total += np.sum(stats.norm.logpdf(f, np.concatenate([position, np.eye(3).ravel()]), stds))
    total += np.sum(stats.norm.logpdf(frame("gripper_left_base_link").translation, c, 0.02))
    return total


def _postures(n, seed):
    """(n, 34): joints inside and slightly beyond the limits, base near standing."""
    rng = np.random.default_rng(seed)
    robot = talos.TalosWholeBody().robot
    q = rng.uniform(robot.lower - 0.05, robot.upper + 0.05, (n, 28))
    xyz = rng.normal([0.0, 0.0, 1.0], 0.05, (n, 3))
    rpy = rng.normal(0.0, 0.3, (n, 3))
    return np.concatenate([q, xyz, rpy], axis=1)


@pytest.mark.parametrize("com_reference", ["left_foot", "feet_center"])
def test_log_prob_matches_pinocchio_reference(com_reference):
    target = targets.make_target("talos", com_reference=com_reference)
    x = _postures(5, seed=0)
    # A posture with the CoM inside the box and the feet close to their targets (q = 0, base at
    # standing height, soles at y = +-0.085 vs targets +-0.09): all terms in their central part.
    x[0] = np.concatenate([np.zeros(28), [0.02, 0.0, 1.083], np.zeros(3)])
    c = np.array(talos.DEFAULT_CONTEXT) + np.random.default_rng(1).normal(0, 0.2, (5, 3))
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(target.log_prob)(x, c))
    ref = [_reference_log_prob(x[i], c[i], com_reference) for i in range(5)]
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-8)
    assert got[0] > got[1:].max()


@pytest.mark.slow  # ~25 s; kinematics/test_properties.py checks float32 FK of TALOS too
def test_float32_matches_float64_and_gradients_are_finite():
    target = talos.TalosWholeBody()
    x = _postures(5, seed=2)
    c = np.asarray(target.sample_contexts(jax.random.key(0), 5))
    value_and_grad = jax.jit(jax.value_and_grad(lambda v: jnp.sum(target.log_prob(v, c))))
    total, grad = value_and_grad(jnp.asarray(x, jnp.float32))
    assert grad.shape == (5, 34) and np.all(np.isfinite(grad))
    with jax.enable_x64(True):
        ref = np.asarray(jax.jit(target.log_prob)(x, c.astype(np.float64)))
    np.testing.assert_allclose(total, ref.sum(), rtol=1e-4)
    # Broadcasting: x (3, 5, 34) against c (5, 3) gives (3, 5) (traced only, not compiled).
    out = jax.eval_shape(target.log_prob, jnp.zeros((3, 5, 34)), c)
    assert out.shape == (3, 5) and out.dtype == jnp.float32


def test_context_prior_region():
    target = talos.TalosWholeBody()
    c = np.asarray(target.sample_contexts(jax.random.key(1), 2000))
    assert c.shape == (2000, 3) and c.dtype == np.float32
    r = np.linalg.norm(c, axis=1)
    assert 0.2 - 1e-5 <= r.min() and r.max() <= 1.0 + 1e-5
    polar = np.degrees(np.arccos(c[:, 2] / r))
    assert 10 - 1e-3 <= polar.min() < 12 and 88 < polar.max() <= 90 + 1e-3  # above the floor
    assert np.all(c[:, 0] >= -1e-6)  # azimuth in [-90, 90] degrees: in front of the robot
    target.check_reachable(c)
    # The unrestricted gmmvi prior (170 degrees, not rad2deg(170)) reaches below the floor.
    full = talos.TalosWholeBody(max_polar=math.radians(170))
    z = np.asarray(full.sample_contexts(jax.random.key(1), 2000))[:, 2]
    assert 0.4 < np.mean(z < 0) < 0.6 and z.min() > -1.0


def test_world_frame_conventions():
    """CoM and links follow [R_base | p_base] with R_base = Rz(yaw) Ry(pitch) Rx(roll)."""
    target = talos.TalosWholeBody()
    x = _postures(3, seed=3)
    with jax.enable_x64(True):
        com = np.asarray(target.center_of_mass(x))
        local = np.asarray(target.robot.center_of_mass(x[:, :28]))
        sole = np.asarray(target.world_link_poses(x, ["left_sole_link"]))[:, 0]
        local_sole = np.asarray(target.robot.link_poses(x[:, :28], ["left_sole_link"]))[:, 0]
    rot = Rotation.from_euler("xyz", x[:, 31:]).as_matrix()
    np.testing.assert_allclose(com, np.einsum("nij,nj->ni", rot, local) + x[:, 28:31], atol=1e-12)
    np.testing.assert_allclose(sole[:, :3, :3], rot @ local_sole[:, :3, :3], atol=1e-12)


def test_box_skeleton_and_joints():
    target = talos.TalosWholeBody()
    assert target.lower.shape == target.upper.shape == (34,)
    assert np.all(target.lower < target.upper)
    standing = np.concatenate([np.zeros(28), [0.0, 0.0, 1.083], np.zeros(3)])
    assert np.all((target.lower <= standing) & (standing <= target.upper))
    x = jnp.asarray(_postures(2, seed=4), jnp.float32)
    points = target.skeleton_points(x)
    assert points.shape == (2, len(target.skeleton_links), 3)
    edges = target.skeleton_edges
    assert len(edges) == len(target.skeleton_links) - 1  # a tree rooted at base_link
    assert {p for p, _ in edges} >= {0}  # base_link is a parent
    gripper = target.skeleton_links.index("gripper_left_base_link")
    c = points[:, gripper] + jnp.array([0.0, 0.03, -0.04])
    np.testing.assert_allclose(target.position_error(x, c), 0.05, rtol=1e-4)
    np.testing.assert_array_equal(target.joints(x), x[:, :28])


def test_workspace_bound_and_error():
    target = talos.TalosWholeBody()
    centre, radius = target.workspace
    np.testing.assert_allclose(centre, FEET["left_sole_link"])
    # The bound holds for random postures (sole -> gripper distance in the base frame).
    q = jnp.asarray(references.random_q(target.robot, 4000, seed=5))
    poses = target.robot.link_poses(q, ["left_sole_link", "gripper_left_base_link"])
    dist = np.linalg.norm(np.asarray(poses[:, 0, :3, 3] - poses[:, 1, :3, 3]), axis=1)
    assert dist.max() <= radius < 2.5
    target.check_reachable(talos.DEFAULT_CONTEXT)
    with pytest.raises(WorkspaceError, match=r"\[0\.0, 0\.0, 3\.0\].*at most 2\.2"):
        target.check_reachable([[0.1, 0.5, 1.0], [0.0, 0.0, 3.0]])
    with pytest.raises(ValueError, match="NaN"):
        target.check_reachable([0.1, np.nan, 1.0])


def test_bad_settings_and_shapes():
    with pytest.raises(ValueError, match="com_reference must be one of"):
        talos.TalosWholeBody(com_reference="pelvis")
    with pytest.raises(ValueError, match="min_polar <= max_polar"):
        talos.TalosWholeBody(min_polar=2.0, max_polar=1.0)
    with pytest.raises(ValueError, match="gripper_std must be a finite number > 0"):
        talos.TalosWholeBody(gripper_std=-1.0)
    target = talos.TalosWholeBody()
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 34\), got \(28,\)"):
        target.log_prob(jnp.zeros(28), jnp.zeros(3))
    with pytest.raises(ValueError, match=r"c must have shape \(\.\.\., 3\)"):
        target.log_prob(jnp.zeros(34), jnp.zeros(2))
    assert hash(target) == hash(targets.make_target("talos"))


@pytest.mark.slow
def test_sampled_contexts_are_reachable_by_optimisation():
    """Gradient ascent on log p reaches contexts of the default prior with the feet in place."""
    target = talos.TalosWholeBody()
    contexts = jnp.concatenate(
        [jnp.asarray([talos.DEFAULT_CONTEXT]), target.sample_contexts(jax.random.key(3), 7)]
    )
    x0 = jnp.concatenate([jnp.zeros((8, 28)), jnp.tile(jnp.array([0, 0, 1.0, 0, 0, 0]), (8, 1))], 1)
    x0 = x0 + 0.1 * jax.random.normal(jax.random.key(4), x0.shape)
    steps = 2500
    opt = optax.adam(optax.cosine_decay_schedule(0.02, steps, 0.01))

    @jax.jit
    def run(x):
        def body(carry, _):
            x, state = carry
            grad = jax.grad(lambda v: -jnp.sum(target.log_prob(v, contexts)))(x)
            updates, state = opt.update(grad, state)
            return (x + updates, state), None

        return jax.lax.scan(body, (x, opt.init(x)), None, length=steps)[0][0]

    x = run(x0)
    gripper_err = np.asarray(target.position_error(x, contexts))
    soles = target.world_link_poses(x, ["left_sole_link", "right_sole_link"])
    sole_err = np.linalg.norm(
        np.asarray(soles[:, :, :3, 3]) - np.array(list(FEET.values())), axis=-1
    ).max(1)
    reached = (gripper_err < 0.01) & (sole_err < 0.005)
    assert reached.sum() >= 7, (gripper_err, sole_err)
