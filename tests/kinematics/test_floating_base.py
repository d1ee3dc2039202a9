"""Floating-base pose (R = Rz(yaw) Ry(pitch) Rx(roll)) and world poses of tips."""

import jax
import numpy as np
import pinocchio as pin
from scipy.spatial import transform

from avips_jax import kinematics
from tests.kinematics import references


def test_floating_base_pose_matches_scipy():
    rng = np.random.default_rng(16)
    xyz, rpy = rng.normal(size=(4, 3)), rng.uniform(-3, 3, (4, 3))
    with jax.enable_x64(True):
        base = np.asarray(kinematics.floating_base_pose(xyz, rpy))
    assert base.shape == (4, 4, 4)
    # scipy's lowercase "xyz" is extrinsic x, then y, then z: R = Rz Ry Rx.
    np.testing.assert_allclose(
        base[:, :3, :3], transform.Rotation.from_euler("xyz", rpy).as_matrix(), atol=1e-14
    )
    np.testing.assert_allclose(base[:, :3, 3], xyz, atol=0)
    np.testing.assert_array_equal(base[:, 3], np.broadcast_to([0, 0, 0, 1.0], (4, 4)))
    broadcast = kinematics.floating_base_pose(np.zeros(3), np.zeros((2, 5, 3)))
    assert broadcast.shape == (2, 5, 4, 4)


def test_world_poses_match_pinocchio_free_flyer():
    robot = kinematics.load_robot("talos")
    ref = references.pin_reference("talos", free_flyer=True)
    rng = np.random.default_rng(17)
    q = references.random_q(robot, 5, seed=17)
    xyz, rpy = rng.normal(size=(5, 3)), rng.uniform(-1, 1, (5, 3))
    with jax.enable_x64(True):
        base = kinematics.floating_base_pose(xyz, rpy)
        world = np.asarray(kinematics.world_poses(base, robot.link_poses(q, robot.tips)))
        single = np.asarray(base @ robot.end_effector_pose(q))
    np.testing.assert_allclose(single, world[:, 0], atol=1e-14)
    for i in range(5):
        quat = pin.Quaternion(pin.rpy.rpyToMatrix(*rpy[i])).coeffs()  # x, y, z, w
        expected = ref.poses(q[i], robot.tips, base=np.concatenate([xyz[i], quat]))
        np.testing.assert_allclose(world[i], expected, atol=1e-12)
