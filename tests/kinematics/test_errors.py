"""Each bad input raises its own exception, with a message that names the problem."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avips_jax import kinematics

_TWO_LINKS = """<robot name="two">
  <link name="a"/><link name="b"/>
  <joint name="j" type="revolute"><parent link="a"/><child link="b"/><axis xyz="0 0 1"/>
    <limit lower="-1" upper="1"/>{extra}</joint>
</robot>"""


def two_links(extra=""):
    """A one-joint URDF with `extra` XML inside the joint element."""
    return _TWO_LINKS.format(extra=extra)


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.urdf"
    with pytest.raises(kinematics.UrdfFileNotFoundError, match="nope.urdf") as info:
        kinematics.load_robot(str(missing))
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(FileNotFoundError, match="not found"):
        kinematics.load_urdf(missing)


def test_malformed_xml(tmp_path):
    path = tmp_path / "bad.urdf"
    path.write_text("<robot name='x'><link name='a'></robot>")
    with pytest.raises(kinematics.MalformedUrdfError, match="malformed XML.*bad.urdf"):
        kinematics.load_robot(str(path))


def test_not_a_urdf():
    with pytest.raises(kinematics.NotUrdfError, match="not a URDF.*<sdf>"):
        kinematics.load_robot_from_string("<sdf version='1.6'><model name='m'/></sdf>")


def test_unknown_robot_lists_available():
    with pytest.raises(kinematics.UnknownRobotError, match="unknown robot 'pandaa'.*panda.*talos"):
        kinematics.load_robot("pandaa")
    with pytest.raises(KeyError):
        kinematics.load_robot("planar_0")
    with pytest.raises(kinematics.KinematicsError, match="registered robot"):
        kinematics.load_robot("panda", tips=["panda_link5"])


def test_unknown_link():
    robot = kinematics.load_robot("panda")
    with pytest.raises(kinematics.UnknownLinkError, match="unknown link 'gripper'.*panda_hand"):
        robot.link_poses(np.zeros(7), ["panda_hand", "gripper"])
    with pytest.raises(kinematics.UnknownLinkError, match="unknown link 'x'"):
        robot.jacobian(np.zeros(7), "x")
    with pytest.raises(kinematics.UnknownLinkError, match="unknown tip link 'hand'"):
        kinematics.load_robot(kinematics.urdf_path("panda"), tips=["hand"])
    with pytest.raises(kinematics.KinematicsError, match="sequence of link names"):
        robot.link_poses(np.zeros(7), "panda_hand")


def test_chain_that_does_not_connect():
    path = kinematics.urdf_path("talos")
    with pytest.raises(kinematics.ChainError, match="'left_sole_link' is not connected to root"):
        kinematics.load_robot(path, root="arm_left_1_link", tips=["left_sole_link"])
    with pytest.raises(kinematics.ChainError, match="neither in joint_names nor locked"):
        kinematics.load_robot(path, tips=["left_sole_link"], joint_names=["leg_left_1_joint"])


def test_wrong_q_shape():
    robot = kinematics.load_robot("panda")
    with pytest.raises(kinematics.ShapeError, match=r"shape \(4, 6\).*\(\.\.\., 7\)"):
        robot.end_effector_pose(np.zeros((4, 6)))
    with pytest.raises(kinematics.ShapeError, match=r"shape \(\)"):
        robot.end_effector_pose(0.0)
    with pytest.raises(kinematics.ShapeError):  # static shapes are checked under jit too
        jax.jit(robot.end_effector_pose)(jnp.zeros(8))
    with pytest.raises(kinematics.ShapeError, match="talos"):
        kinematics.load_robot("talos").center_of_mass(np.zeros(27))


def test_nan_in_q():
    robot = kinematics.load_robot("panda")
    q = np.zeros((2, 7))
    q[1, 3] = np.nan
    with pytest.raises(kinematics.NonFiniteError, match=r"index \(1, 3\)"):
        robot.link_poses(q, ["panda_hand"])
    with pytest.raises(kinematics.NonFiniteError):
        robot.jacobian(jnp.full(7, jnp.inf))


def test_mimic_to_unknown_joint_and_cycles():
    bad = two_links('<mimic joint="ghost"/>')
    with pytest.raises(kinematics.MimicError, match="'j' mimics unknown joint 'ghost'"):
        kinematics.load_robot_from_string(bad)
    with pytest.raises(kinematics.MimicError, match="mimic cycle"):
        kinematics.load_robot_from_string(two_links('<mimic joint="j"/>'))


def test_invalid_urdf_structure():
    with pytest.raises(kinematics.InvalidUrdfError, match="unknown child link 'c'"):
        kinematics.parse_urdf(two_links().replace('<child link="b"/>', '<child link="c"/>'))
    with pytest.raises(kinematics.InvalidUrdfError, match="unknown type 'hinge'"):
        kinematics.parse_urdf(two_links().replace('type="revolute"', 'type="hinge"'))
    with pytest.raises(kinematics.InvalidUrdfError, match="xyz='1 2'"):
        kinematics.parse_urdf(two_links('<origin xyz="1 2"/>'))
    with pytest.raises(kinematics.InvalidUrdfError, match="prismatic joint 'j' has no <limit>"):
        kinematics.parse_urdf(
            two_links()
            .replace('type="revolute"', 'type="prismatic"')
            .replace('<limit lower="-1" upper="1"/>', "")
        )


def test_unsupported_joint_on_chain():
    floating = two_links().replace('type="revolute"', 'type="floating"')
    with pytest.raises(kinematics.UnsupportedJointError, match="'j' on the chain is floating"):
        kinematics.load_robot_from_string(floating, tips=["b"])


def test_center_of_mass_without_inertials():
    with pytest.raises(kinematics.NoInertiaError, match="'valkyrie'.*no <inertial>"):
        kinematics.load_robot("valkyrie").center_of_mass(np.zeros(10))
    with pytest.raises(kinematics.NoInertiaError):
        kinematics.load_robot("planar_3").center_of_mass(np.zeros(3))
