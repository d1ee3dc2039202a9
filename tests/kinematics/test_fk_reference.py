"""FK against pinocchio (Panda, TALOS, Valkyrie, Atlas) and yourdfpy (Valkyrie, Atlas), float64."""

import jax
import numpy as np
import pytest

from avips_jax import kinematics
from tests.kinematics import references

N_CONFIGS = 50
TOL = 1e-9  # metres and rotation-matrix entries


def _extra_links(name):
    """A few intermediate (and off-chain) links checked besides the tips."""
    return {
        "panda": ["panda_link3", "panda_link7", "panda_link8", "panda_leftfinger"],
        "talos": ["torso_2_link", "arm_right_4_link", "leg_left_3_link", "head_2_link", "imu_link"],
        "valkyrie": ["torso", "leftElbowPitchLink"],
        "atlas": ["utorso", "l_clav", "l_larm"],
    }[name]


@pytest.mark.parametrize("name", ["panda", "talos", "valkyrie", "atlas"])
def test_fk_matches_pinocchio(name):
    robot = kinematics.load_robot(name)
    ref = references.pin_reference(name)
    links = list(robot.tips) + _extra_links(name)
    q = references.random_q(robot, N_CONFIGS, seed=1)
    with jax.enable_x64(True):
        poses = np.asarray(robot.link_poses(q, links))
    assert poses.dtype == np.float64 and poses.shape == (N_CONFIGS, len(links), 4, 4)
    expected = np.stack([ref.poses(qi, links) for qi in q])
    np.testing.assert_allclose(poses[..., :3, 3], expected[..., :3, 3], rtol=0, atol=TOL)
    np.testing.assert_allclose(poses[..., :3, :3], expected[..., :3, :3], rtol=0, atol=TOL)
    np.testing.assert_array_equal(
        poses[..., 3, :], np.broadcast_to([0, 0, 0, 1.0], (50, len(links), 4))
    )


@pytest.mark.parametrize("name", ["valkyrie", "atlas"])
def test_authored_urdf_matches_yourdfpy(name):
    robot = kinematics.load_robot(name)
    model = references.yourdfpy_model(path=str(kinematics.urdf_path(name)))
    q = references.random_q(robot, N_CONFIGS, seed=2)
    with jax.enable_x64(True):
        poses = np.asarray(robot.link_poses(q, robot.chain_links))
    for qi, pose in zip(q, poses, strict=True):
        cfg = dict(zip(robot.joint_names, qi, strict=True))
        expected = references.yourdfpy_poses(model, cfg, robot.chain_links, robot.root_link)
        np.testing.assert_allclose(pose, expected, rtol=0, atol=TOL)


def test_end_effector_pose_is_the_tip_pose():
    robot = kinematics.load_robot("talos")
    q = references.random_q(robot, 4, seed=3)
    with jax.enable_x64(True):
        all_tips = np.asarray(robot.link_poses(q, robot.tips))
        ee = np.asarray(robot.end_effector_pose(q))
    assert robot.end_effector == "gripper_left_base_link"
    np.testing.assert_array_equal(ee, all_tips[:, 0])
