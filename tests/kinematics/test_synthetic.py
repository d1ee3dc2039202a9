"""Any URDF: mimic, prismatic, continuous and fixed joints, odd axes and origins, user options."""

import math

import jax
import numpy as np
import pytest

from avips_jax import kinematics
from tests.kinematics import references

# world -(fixed)-> base -j1(revolute)-> l1 -j2(continuous, axis 1 1 0)-> l2 -j3(prismatic)-> l3
# -(fixed)-> tip; l1 -m1(revolute, mimic j1 x -2 + 0.3)-> m1_link -(fixed)-> tip2;
# l2 -m2(prismatic, mimic j3 x 0.5)-> m2_link; base -j_off(revolute, off the chains)-> off_link.
SYNTHETIC = """<?xml version="1.0"?>
<robot name="synthetic">
  <link name="world"/><link name="base"><inertial><mass value="2.0"/>
    <origin xyz="0.1 0 0" rpy="0.3 0 0"/></inertial></link>
  <link name="l1"><inertial><mass value="1.0"/><origin xyz="0 0.2 0"/></inertial></link>
  <link name="l2"/><link name="l3"/><link name="tip"/><link name="m1_link"/><link name="tip2"/>
  <link name="m2_link"/><link name="off_link"><inertial><mass value="0.5"/></inertial></link>
  <joint name="world_joint" type="fixed"><parent link="world"/><child link="base"/>
    <origin xyz="0.5 -0.2 1.0" rpy="0.1 0.2 0.3"/></joint>
  <joint name="j1" type="revolute"><parent link="base"/><child link="l1"/>
    <origin xyz="0.1 0.2 0.3" rpy="0.4 -0.5 0.6"/><axis xyz="0 0 1"/>
    <limit lower="-2" upper="2" effort="1" velocity="1"/></joint>
  <joint name="j2" type="continuous"><parent link="l1"/><child link="l2"/>
    <origin xyz="0 0.3 0" rpy="1.5707963267948966 0 0"/><axis xyz="1 1 0"/></joint>
  <joint name="j3" type="prismatic"><parent link="l2"/><child link="l3"/>
    <origin xyz="0.2 0 0.1" rpy="0 0.7 0"/><axis xyz="0 0.6 0.8"/>
    <limit lower="-0.1" upper="0.4" effort="1" velocity="1"/></joint>
  <joint name="tip_joint" type="fixed"><parent link="l3"/><child link="tip"/>
    <origin xyz="0 0 0.05" rpy="0 0 -0.7853981633974483"/></joint>
  <joint name="m1" type="revolute"><parent link="l1"/><child link="m1_link"/>
    <origin xyz="0.05 0 0" rpy="0 0 0"/><axis xyz="0 1 0"/>
    <limit lower="-4" upper="4" effort="1" velocity="1"/>
    <mimic joint="j1" multiplier="-2.0" offset="0.3"/></joint>
  <joint name="tip2_joint" type="fixed"><parent link="m1_link"/><child link="tip2"/>
    <origin xyz="0.1 0.1 0" rpy="0 0 0"/></joint>
  <joint name="m2" type="prismatic"><parent link="l2"/><child link="m2_link"/>
    <origin xyz="0 0 0.2"/><axis xyz="1 0 0"/>
    <limit lower="-1" upper="1" effort="1" velocity="1"/>
    <mimic joint="j3" multiplier="0.5"/></joint>
  <joint name="j_off" type="revolute"><parent link="base"/><child link="off_link"/>
    <origin xyz="0 0 -0.2"/><axis xyz="1 0 0"/>
    <limit lower="-1" upper="1" effort="1" velocity="1"/></joint>
</robot>
"""
TIPS = ("tip", "tip2", "m2_link")
LINKS = ("base", "l1", "l2", "l3", "tip", "m1_link", "tip2", "m2_link", "world")


@pytest.fixture(scope="module")
def synthetic():
    return kinematics.load_robot_from_string(SYNTHETIC, root="base", tips=TIPS)


def test_chain_extraction(synthetic):
    # j1, j2, j3 are on the paths; the mimic joints contribute their sources; j_off is off-chain.
    assert synthetic.joint_names == ("j1", "j2", "j3")
    np.testing.assert_allclose(synthetic.lower, [-2, -math.pi, -0.1])
    np.testing.assert_allclose(synthetic.upper, [2, math.pi, 0.4])
    assert synthetic.end_effector == "tip" and synthetic.root_link == "base"
    assert synthetic.name == "synthetic"


def test_matches_yourdfpy(synthetic):
    model = references.yourdfpy_model(text=SYNTHETIC)
    assert set(model.actuated_joint_names) == {"j1", "j2", "j3", "j_off"}  # mimics excluded
    q = references.random_q(synthetic, 30, seed=18)
    q[:, 1] *= 3  # continuous joint beyond [-pi, pi]
    with jax.enable_x64(True):
        poses = np.asarray(synthetic.link_poses(q, LINKS))
    for qi, pose in zip(q, poses, strict=True):
        cfg = {"j1": qi[0], "j2": qi[1], "j3": qi[2], "j_off": 0.0}
        expected = references.yourdfpy_poses(model, cfg, LINKS, "base")
        np.testing.assert_allclose(pose, expected, rtol=0, atol=1e-12)


def test_mimic_joint_follows_its_source(synthetic):
    with jax.enable_x64(True):
        at = lambda q1: np.asarray(
            synthetic.link_poses(np.array([q1, 0.0, 0.0]), ["l1", "m1_link"])
        )
        l1, m1 = at(0.4)
    relative = np.linalg.inv(l1) @ m1  # Trans(0.05, 0, 0) · Ry(-2 · 0.4 + 0.3)
    angle = -2 * 0.4 + 0.3
    expected = np.array([[math.cos(angle), 0, math.sin(angle), 0.05], [0, 1, 0, 0],
                         [-math.sin(angle), 0, math.cos(angle), 0], [0, 0, 0, 1]])  # fmt: skip
    np.testing.assert_allclose(relative, expected, atol=1e-12)


def test_locked_joints_and_custom_order():
    reordered = kinematics.load_robot_from_string(
        SYNTHETIC, root="base", tips=TIPS, joint_names=["j3", "j1"], locked={"j2": 0.7}
    )
    full = kinematics.load_robot_from_string(SYNTHETIC, root="base", tips=TIPS)
    q = references.random_q(reordered, 5, seed=19)
    q_full = np.stack([q[:, 1], np.full(5, 0.7), q[:, 0]], axis=1)
    with jax.enable_x64(True):
        np.testing.assert_allclose(
            reordered.link_poses(q, LINKS), full.link_poses(q_full, LINKS), atol=1e-12
        )


def test_center_of_mass_over_all_links(synthetic):
    """Masses on base (root), l1 (moves with j1) and off_link (off-chain, j_off held at 0)."""
    q = np.array([0.9, 0.1, 0.2])
    with jax.enable_x64(True):
        base, l1, off = np.asarray(synthetic.link_poses(q, ["base", "l1", "off_link"]))
        com = np.asarray(synthetic.center_of_mass(q))
        com_no_root = np.asarray(synthetic.center_of_mass(q, include_root=False))
    points = [base[:3, 3] + [0.1, 0, 0], l1[:3, :3] @ [0, 0.2, 0] + l1[:3, 3], off[:3, 3]]
    masses = np.array([2.0, 1.0, 0.5])
    np.testing.assert_allclose(com, masses @ np.array(points) / 3.5, atol=1e-12)
    # Without the root: off_link is rigidly attached to it too (j_off is held), only l1 is left.
    np.testing.assert_allclose(com_no_root, points[1], atol=1e-12)


def test_user_urdf_file_default_chain():
    path = kinematics.urdf_path("panda")
    user = kinematics.load_robot(str(path), root="panda_link0", tips=["panda_hand"])
    assert user.name == "panda" and user.joint_names == kinematics.load_robot("panda").joint_names
    fingers = kinematics.load_robot(path, tips=["panda_leftfinger", "panda_rightfinger"])
    # The right finger joint mimics the left one: one dof for both.
    assert fingers.joint_names[-1] == "panda_finger_joint1" and fingers.dof == 8
    assert fingers.root_link == "panda_link0" and fingers.end_effector == "panda_leftfinger"
    model = references.yourdfpy_model(path=str(path))
    q = references.random_q(fingers, 10, seed=20)
    with jax.enable_x64(True):
        poses = np.asarray(fingers.link_poses(q, fingers.tips))
    for qi, pose in zip(q, poses, strict=True):
        cfg = dict(zip(fingers.joint_names, qi, strict=True))
        expected = references.yourdfpy_poses(model, cfg, fingers.tips, "panda_link0")
        np.testing.assert_allclose(pose, expected, atol=1e-12)
