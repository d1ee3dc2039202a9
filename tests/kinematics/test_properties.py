"""dtype, batching, jit/vmap/grad and immutability of the FK."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avips_jax import kinematics
from avips_jax.kinematics import trig
from tests.kinematics import references

pytestmark = pytest.mark.usefixtures("fast_compiles")  # compile time dominates

ALL_ROBOTS = ["panda", "valkyrie", "valkyrie_arm_shoulder", "valkyrie_arm", "atlas", "atlas_arm",
              "talos", "planar_7"]  # fmt: skip


@pytest.mark.parametrize("name", ALL_ROBOTS)
def test_float32_close_to_float64(name):
    robot = kinematics.load_robot(name)
    q = references.random_q(robot, 64, seed=13)
    poses32 = robot.link_poses(q.astype(np.float32), robot.tips)
    assert poses32.dtype == jnp.float32
    with jax.enable_x64(True):
        poses64 = np.asarray(robot.link_poses(q, robot.tips))
    error = np.abs(np.asarray(poses32, np.float64) - poses64)
    assert error[..., :3, 3].max() < 1e-5  # m
    assert error[..., :3, :3].max() < 1e-5


def test_default_dtype_and_integer_q():
    robot = kinematics.load_robot("planar_2")
    assert robot.end_effector_pose(np.zeros(2)).dtype == jnp.float32  # x64 off: float32
    pose = robot.end_effector_pose(np.array([0, 0]))  # integers are promoted
    assert pose.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(pose)[:3, 3], [1.0, 0.0, 0.0], atol=1e-7)


def test_batched_leading_axes():
    robot = kinematics.load_robot("atlas_arm")
    q = references.random_q(robot, 15, seed=14).reshape(3, 5, 6).astype(np.float32)
    links = ["l_uarm", "l_hand"]
    poses = np.asarray(robot.link_poses(q, links))
    assert poses.shape == (3, 5, 2, 4, 4)
    for i, j in [(0, 0), (1, 2), (2, 4)]:
        single = robot.link_poses(q[i, j], links)
        assert single.shape == (2, 4, 4)
        np.testing.assert_allclose(np.asarray(single), poses[i, j], atol=1e-6)
    assert robot.end_effector_pose(q).shape == (3, 5, 4, 4)


def test_jit_vmap_grad():
    robot = kinematics.load_robot("valkyrie_arm")
    q = jnp.asarray(references.random_q(robot, 8, seed=15), jnp.float32)
    eager = robot.end_effector_pose(q)
    jitted = jax.jit(robot.end_effector_pose)(q)
    vmapped = jax.vmap(robot.end_effector_pose)(q)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), atol=1e-6)
    np.testing.assert_allclose(np.asarray(vmapped), np.asarray(eager), atol=1e-6)

    def height(qi):
        return robot.end_effector_pose(qi)[2, 3]

    grads = jax.vmap(jax.grad(height))(q)
    jac = robot.jacobian(q, orientation=False)
    np.testing.assert_allclose(np.asarray(grads), np.asarray(jac[:, 2, :]), atol=1e-5)
    assert np.all(np.isfinite(np.asarray(jax.jit(jax.grad(lambda x: height(x).sum()))(q[0]))))


def test_robot_is_immutable_and_a_valid_static_argument():
    robot = kinematics.load_robot("planar_4")
    with pytest.raises(dataclasses.FrozenInstanceError):
        robot.name = "other"
    with pytest.raises(ValueError):
        robot.lower[0] = 0.0
    assert hash(robot) == hash(kinematics.load_robot("planar_4"))
    traces = []

    @jax.jit
    def pose(q):
        traces.append(1)
        return robot.end_effector_pose(q)

    pose(jnp.zeros(4))
    pose(jnp.ones(4))
    assert len(traces) == 1
    static = jax.jit(lambda r, q: r.end_effector_pose(q), static_argnums=0)
    np.testing.assert_allclose(
        np.asarray(static(robot, jnp.ones(4))), np.asarray(pose(jnp.ones(4)))
    )


def test_nan_checked_eagerly_but_not_under_jit():
    robot = kinematics.load_robot("planar_3")
    q = np.array([0.1, np.nan, 0.2])
    with pytest.raises(kinematics.NonFiniteError, match="non-finite"):
        robot.end_effector_pose(q)
    # Under jit the values are tracers: no check, NaN propagates (documented).
    assert np.isnan(np.asarray(jax.jit(robot.end_effector_pose)(q))).any()
    with pytest.raises(kinematics.NonFiniteError, match=r"q holds 1 non-finite.*index \(1,\)"):
        kinematics.check_finite(q)
    kinematics.check_finite(np.zeros(3))


def test_float32_sincos_accuracy_and_derivative():
    x = np.concatenate([np.linspace(-8000, 8000, 20001), np.linspace(-7, 7, 10001)])
    x32 = jnp.asarray(x, jnp.float32)
    sin, cos = jax.jit(trig.sincos)(x32)
    exact = np.asarray(x32, np.float64)  # the float32 inputs, evaluated exactly
    np.testing.assert_allclose(np.asarray(sin, np.float64), np.sin(exact), rtol=0, atol=2e-7)
    np.testing.assert_allclose(np.asarray(cos, np.float64), np.cos(exact), rtol=0, atol=2e-7)
    d_sin = jax.vmap(jax.grad(lambda t: trig.sincos(t)[0]))(x32[:5])
    np.testing.assert_allclose(np.asarray(d_sin), np.asarray(cos[:5]), atol=0)
    assert np.isnan(np.asarray(trig.sincos(jnp.asarray([np.nan, np.inf], jnp.float32)))).all()
