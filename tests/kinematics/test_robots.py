"""The registry contract: names, joint orders, limits, authored files vs docs/robots.md, short
chains."""

import math

import jax
import numpy as np
import pytest

from avips_jax import kinematics
from avips_jax.kinematics import urdf
from tests.kinematics import references

# Typed from docs/robots.md §2.2, §2.3: joint -> (parent link, origin xyz, axis, lower, upper).
VALKYRIE_TABLE = {
    "torsoYaw": ("pelvis", (0.0, 0.0, 0.0), (0, 0, 1), -1.329, 1.181),
    "torsoPitch": ("torsoYawLink", (0.04191, 0.0, 0.0), (0, 1, 0), -0.13, 0.666),
    "torsoRoll": ("torsoPitchLink", (0.0, 0.0, 0.0203), (1, 0, 0), -0.23, 0.255),
    "leftShoulderPitch": ("torso", (-0.0316, 0.0, 0.2984), (0, 1, 0), -2.85, 2.0),
    "leftShoulderRoll": ("leftShoulderPitchLink", (0.0, 0.2499, 0.0), (1, 0, 0), -1.519, 1.266),
    "leftShoulderYaw": ("leftShoulderRollLink", (0.0, 0.0, 0.0), (0, 1, 0), -3.1, 2.18),
    "leftElbowPitch": ("leftShoulderYawLink", (0.0254, 0.33, 0.0), (0, 0, 1), -2.174, 0.12),
    "leftForearmYaw": ("leftElbowPitchLink", (-0.0254, 0, 0), (0, 1, 0), -2.019, 3.14),
    "leftWristRoll": ("leftForearmLink", (0.0, 0.2871, 0.0), (1, 0, 0), -0.62, 0.625),
    "leftWristPitch": ("leftWristRollLink", (0.0, 0.0, 0.0), (0, 0, 1), -0.36, 0.49),
}
ATLAS_TABLE = {
    "back_lbz": ("pelvis", (-0.0125, 0, 0), (0, 0, 1), -0.610865, 0.610865),
    "back_mby": ("ltorso", (0, 0, 0.09), (0, 1, 0), -1.2, 1.28),
    "back_ubx": ("mtorso", (0, 0, 0.05), (1, 0, 0), -0.790809, 0.790809),
    "l_arm_usy": ("utorso", (0.024, 0.221, 0.289), (0, 0.5, 0.866025), -1.9635, 1.9635),
    "l_arm_shx": ("l_clav", (0, 0.075, 0.036), (1, 0, 0), -1.39626, 1.74533),
    "l_arm_ely": ("l_scap", (0, 0.185, 0), (0, 1, 0), 0, 3.14159),
    "l_arm_elx": ("l_uarm", (0, 0.121, 0.013), (1, 0, 0), 0, 2.35619),
    "l_arm_uwy": ("l_larm", (0, 0.188, -0.013), (0, 1, 0), -1.571, 1.571),
    "l_arm_mwx": ("l_farm", (0, 0.058, 0), (1, 0, 0), -0.436, 1.571),
}
TALOS_ORDER = (
    ["torso_1_joint", "torso_2_joint"]
    + [f"arm_right_{i}_joint" for i in range(1, 8)]
    + [f"arm_left_{i}_joint" for i in range(1, 8)]
    + [f"leg_right_{i}_joint" for i in range(1, 7)]
    + [f"leg_left_{i}_joint" for i in range(1, 7)]
)
PANDA_LIMITS = [(-2.8973, 2.8973), (-1.7628, 1.7628), (-2.8973, 2.8973), (-3.0718, -0.0698),
                (-2.8973, 2.8973), (-0.0175, 3.7525), (-2.8973, 2.8973)]  # fmt: skip


def test_available_robots():
    names = set(kinematics.available_robots())
    assert names == {"panda", "valkyrie", "valkyrie_arm_shoulder", "valkyrie_arm", "atlas",
                     "atlas_arm", "talos"}  # fmt: skip
    assert kinematics.load_robot("panda") is kinematics.load_robot("panda")


@pytest.mark.parametrize(
    "name, root, ee, dof, first, last",
    [
        ("panda", "panda_link0", "panda_hand", 7, "panda_joint1", "panda_joint7"),
        ("valkyrie", "pelvis", "leftPalm", 10, "torsoYaw", "leftWristPitch"),
        ("valkyrie_arm_shoulder", "pelvis", "leftPalm", 7, "leftShoulderPitch", "leftWristPitch"),
        ("valkyrie_arm", "pelvis", "leftPalm", 4, "leftElbowPitch", "leftWristPitch"),
        ("atlas", "pelvis", "l_hand", 9, "back_lbz", "l_arm_mwx"),
        ("atlas_arm", "pelvis", "l_hand", 6, "l_arm_usy", "l_arm_mwx"),
        ("talos", "base_link", "gripper_left_base_link", 28, "torso_1_joint", "leg_left_6_joint"),
        ("planar_5", "base", "end_effector", 5, "joint_1", "joint_5"),
    ],
)
def test_contract(name, root, ee, dof, first, last):
    robot = kinematics.load_robot(name)
    assert robot.name == name and robot.root_link == root and robot.end_effector == ee
    assert robot.dof == dof == len(robot.joint_names) and isinstance(robot.joint_names, tuple)
    assert robot.joint_names[0] == first and robot.joint_names[-1] == last
    for limits in (robot.lower, robot.upper):
        assert isinstance(limits, np.ndarray) and limits.dtype == np.float64
        assert limits.shape == (dof,)
    assert np.all(robot.lower < robot.upper)
    assert ee in robot.tips


def test_panda_limits_and_talos_order():
    panda = kinematics.load_robot("panda")
    np.testing.assert_array_equal(np.stack([panda.lower, panda.upper], 1), PANDA_LIMITS)
    talos = kinematics.load_robot("talos")
    assert talos.joint_names == tuple(TALOS_ORDER)
    assert talos.tips == ("gripper_left_base_link", "gripper_right_base_link", "left_sole_link",
                          "right_sole_link")  # fmt: skip
    assert talos.lower[TALOS_ORDER.index("arm_left_2_joint")] == 0.0
    assert talos.upper[TALOS_ORDER.index("arm_left_2_joint")] == pytest.approx(2.87979326579)


@pytest.mark.parametrize("name, table", [("valkyrie", VALKYRIE_TABLE), ("atlas", ATLAS_TABLE)])
def test_authored_urdf_matches_robots_md(name, table):
    model = urdf.load_urdf(kinematics.urdf_path(name))
    robot = kinematics.load_robot(name)
    assert list(robot.joint_names) == list(table)
    for i, (joint_name, (parent, xyz, axis, lower, upper)) in enumerate(table.items()):
        joint = model.joints[joint_name]
        assert joint.type == "revolute" and joint.parent == parent
        expected = np.eye(4)
        expected[:3, 3] = xyz
        np.testing.assert_array_equal(joint.origin, expected)
        np.testing.assert_allclose(joint.axis, np.array(axis) / np.linalg.norm(axis), atol=1e-15)
        assert (robot.lower[i], robot.upper[i]) == (lower, upper)
    assert all(inertial is None for inertial in model.links.values())
    header = kinematics.urdf_path(name).read_text()[:600]
    assert ("Valkyrie" if name == "valkyrie" else "Atlas") in header


@pytest.mark.parametrize(
    "short, long, n_leading",
    [("valkyrie_arm_shoulder", "valkyrie", 3), ("valkyrie_arm", "valkyrie", 6),
     ("atlas_arm", "atlas", 3)],
)  # fmt: skip
def test_short_chains_hold_leading_joints_at_zero(short, long, n_leading):
    short_robot, long_robot = kinematics.load_robot(short), kinematics.load_robot(long)
    assert long_robot.joint_names[n_leading:] == short_robot.joint_names
    np.testing.assert_array_equal(long_robot.lower[n_leading:], short_robot.lower)
    q = references.random_q(short_robot, 20, seed=4)
    q_long = np.concatenate([np.zeros((20, n_leading)), q], axis=1)
    with jax.enable_x64(True):
        np.testing.assert_allclose(
            short_robot.end_effector_pose(q), long_robot.end_effector_pose(q_long), atol=1e-12
        )


def test_valkyrie_arm_palm_arc():
    """docs/robots.md §3: the 4-DOF palm lies on a horizontal arc, radius 0.288221 m, centre
    (0.03571, 0.5799), z = 0.3187 m, moved by leftElbowPitch only."""
    robot = kinematics.load_robot("valkyrie_arm")
    q = references.random_q(robot, 100, seed=5)
    with jax.enable_x64(True):
        p = np.asarray(robot.end_effector_pose(q))[:, :3, 3]
        q_other = q.copy()
        q_other[:, 1:] = references.random_q(robot, 100, seed=6)[:, 1:]
        p_other = np.asarray(robot.end_effector_pose(q_other))[:, :3, 3]
    np.testing.assert_allclose(p[:, 2], 0.3187, atol=1e-12)
    radius = np.hypot(p[:, 0] - 0.03571, p[:, 1] - 0.5799)
    np.testing.assert_allclose(radius, 0.288221, atol=1e-6)
    np.testing.assert_allclose(p_other, p, atol=1e-12)


@pytest.mark.parametrize("n", [1, 3, 10])
def test_planar_closed_form(n):
    robot = kinematics.load_robot(f"planar_{n}")
    np.testing.assert_array_equal(robot.lower, -math.pi)
    np.testing.assert_array_equal(robot.upper, math.pi)
    q = references.random_q(robot, 30, seed=n)
    with jax.enable_x64(True):
        pose = np.asarray(robot.end_effector_pose(q))
    angles = np.cumsum(q, axis=1)
    expected_xy = np.stack([np.cos(angles).sum(1), np.sin(angles).sum(1)], 1) / n
    np.testing.assert_allclose(pose[:, :2, 3], expected_xy, atol=1e-12)
    np.testing.assert_allclose(pose[:, 2, 3], 0.0, atol=1e-15)
    heading = angles[:, -1]
    np.testing.assert_allclose(pose[:, 0, 0], np.cos(heading), atol=1e-12)
    np.testing.assert_allclose(pose[:, 1, 0], np.sin(heading), atol=1e-12)
