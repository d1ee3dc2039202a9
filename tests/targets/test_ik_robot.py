"""Choosing the chain of a robot file for IK (avips_jax.targets.ik_robot): tip, root, joint subset,
locked joints, and a clear refusal of every chain that cannot train."""

import jax
import numpy as np
import pytest

from avips_jax import kinematics
from avips_jax.kinematics import errors, robots, tree
from avips_jax.targets import ik_robot, make_target

pytestmark = pytest.mark.usefixtures("fast_compiles")  # compile time dominates

# A hand-written 4-joint arm with a gripper finger and a camera: three leaf links below "base".
ARM = """<robot name="arm4">
  <link name="base"/><link name="l1"/><link name="l2"/><link name="l3"/><link name="l4"/>
  <link name="hand"/><link name="finger"/><link name="camera"/><link name="floating_tool"/>
  <joint name="j1" type="revolute"><parent link="base"/><child link="l1"/>
    <origin xyz="0 0 0.1"/><axis xyz="0 0 1"/><limit lower="-2" upper="2"/></joint>
  <joint name="j2" type="revolute"><parent link="l1"/><child link="l2"/>
    <origin xyz="0 0 0.2"/><axis xyz="0 1 0"/><limit lower="-2" upper="2"/></joint>
  <joint name="j3" type="revolute"><parent link="l2"/><child link="l3"/>
    <origin xyz="0.2 0 0"/><axis xyz="0 1 0"/><limit lower="-2" upper="2"/></joint>
  <joint name="j4" type="revolute"><parent link="l3"/><child link="l4"/>
    <origin xyz="0.2 0 0"/><axis xyz="1 0 0"/><limit lower="-2" upper="2"/></joint>
  <joint name="hand_joint" type="fixed"><parent link="l4"/><child link="hand"/>
    <origin xyz="0.1 0 0"/></joint>
  <joint name="finger_joint" type="prismatic"><parent link="hand"/><child link="finger"/>
    <origin xyz="0.05 0 0"/><axis xyz="0 1 0"/><limit lower="0" upper="0.04"/></joint>
  <joint name="camera_joint" type="fixed"><parent link="base"/><child link="camera"/>
    <origin xyz="0.3 0 0.5"/></joint>
  <joint name="tool_joint" type="fixed"><parent link="l1"/><child link="floating_tool"/>
    <origin xyz="0 0.1 0"/></joint>
</robot>
"""
NO_MOTION = """<robot name="statue">
  <link name="base"/><link name="head"/>
  <joint name="neck" type="fixed"><parent link="base"/><child link="head"/></joint>
</robot>
"""


@pytest.fixture(scope="module")
def arm(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("robots") / "arm4.urdf"
    path.write_text(ARM)
    return str(path)


def test_parse_names_and_joint_values():
    assert ik_robot.parse_names(" a, b,,c ") == ("a", "b", "c")
    assert ik_robot.parse_names("") == ()
    assert ik_robot.parse_joint_values("j1=0.5, j2=-1") == {"j1": 0.5, "j2": -1.0}
    for bad in ("j1", "j1=x", "=1", "j1=nan", "j1=1,j1=2"):
        with pytest.raises(ValueError, match="j1|name=value"):
            ik_robot.parse_joint_values(bad)


def test_several_leaves_and_no_tip_asks_for_one_listing_them(arm):
    with pytest.raises(errors.ChainError, match=r"3 leaf links below 'base' \(finger, floating"):
        ik_robot.load(arm)
    assert tree.leaf_links(kinematics.load_urdf(arm), "l3") == ["finger"]


def test_tip_root_joint_subset_and_locks_choose_the_chain(arm):
    hand = ik_robot.load(arm, tip="hand")
    assert hand.joint_names == ("j1", "j2", "j3", "j4") and hand.end_effector == "hand"
    finger = ik_robot.load(arm, tip="finger")
    assert finger.joint_names == ("j1", "j2", "j3", "j4", "finger_joint")
    locked = ik_robot.load(arm, tip="finger", locked="finger_joint=0.04,j4=0.5")
    assert locked.joint_names == ("j1", "j2", "j3")
    q = np.array([0.3, -0.2, 0.4])
    full = np.array([0.3, -0.2, 0.4, 0.5, 0.04])
    np.testing.assert_allclose(
        np.asarray(locked.end_effector_pose(q)), np.asarray(finger.end_effector_pose(full)), 1e-6
    )
    sub = ik_robot.load(arm, tip="hand", joint_names="j2,j3", locked="j1=0.1,j4=0")
    assert sub.joint_names == ("j2", "j3")
    rooted = ik_robot.load(arm, root="l2", tip="hand")
    assert rooted.joint_names == ("j3", "j4") and rooted.root_link == "l2"
    assert ik_robot.load(arm, tip="hand") is hand  # cached: one Robot (and jit cache) per chain


@pytest.mark.parametrize(
    "selection, error, message",
    [
        ({"tip": "camera"}, errors.ChainError, "no movable joint between root 'base' and tip"),
        ({"tip": "floating_tool", "joint_names": "j1,j2"}, errors.ChainError,
         r"joint\(s\) j2 do not move tip 'floating_tool'"),
        ({"root": "l3", "tip": "l1"}, errors.ChainError, "'l1' is not connected to root link"),
        ({"tip": "wrist"}, errors.UnknownLinkError, "unknown tip link 'wrist'"),
        ({"root": "nowhere"}, errors.UnknownLinkError, "unknown root link 'nowhere'"),
        ({"tip": "hand", "locked": "j9=0"}, errors.UnknownJointError, "unknown locked joint 'j9'"),
        ({"tip": "hand", "locked": "j1"}, ValueError, "name=value"),
    ],
)  # fmt: skip
def test_a_chain_that_cannot_train_is_refused_naming_the_problem(arm, selection, error, message):
    with pytest.raises(error, match=message):
        ik_robot.load(arm, **selection)


def test_a_robot_without_movable_joints_is_refused(tmp_path):
    path = tmp_path / "statue.urdf"
    path.write_text(NO_MOTION)
    with pytest.raises(errors.ChainError, match="no movable joint between root 'base'"):
        make_target("ik", robot_name=str(path))


def test_a_disconnected_file_asks_for_a_root(tmp_path):
    path = tmp_path / "two_trees.urdf"
    path.write_text(
        ARM.replace("</robot>", '<link name="table"/><link name="vase"/>'
                    '<joint name="v" type="fixed"><parent link="table"/><child link="vase"/>'
                    "</joint></robot>")
    )  # fmt: skip
    with pytest.raises(errors.ChainError, match=r"not connected \(root links base, table\)"):
        ik_robot.load(str(path))
    assert ik_robot.load(str(path), root="base", tip="hand").dof == 4


def test_a_registered_robot_keeps_its_fixed_chain():
    assert make_target("ik", robot_name="panda").robot is kinematics.load_robot("panda")
    with pytest.raises(errors.KinematicsError, match="registered robot with a fixed chain"):
        make_target("ik", robot_name="panda", tip="panda_link7")


@pytest.mark.parametrize(
    "file, tip, locked, dof",
    [
        ("ur_description/urdf/ur5_robot.urdf", "tool0", "", 6),
        ("kinova_description/robots/kinova.urdf", "j2s6s200_end_effector", "", 6),
        ("baxter_description/urdf/baxter.urdf", "left_gripper", "", 7),
        ("panda_description/urdf/panda.urdf", "panda_leftfinger", "panda_finger_joint1=0.02", 7),
    ],
)
def test_example_robot_data_files_train_with_a_tip(file, tip, locked, dof):
    path = str(robots.example_robot_data_path(file))
    target = make_target("ik", robot_name=path, tip=tip, locked=locked)
    assert target.dim == dof and target.robot.end_effector == tip
    c = target.sample_contexts(jax.random.PRNGKey(0), 4)
    target.check_reachable(c)  # contexts are FK of joints in the limits: inside the workspace
    x = 0.5 * (target.lower + target.upper) * np.ones((4, 1))
    assert np.all(np.isfinite(np.asarray(target.log_prob(x, c))))
