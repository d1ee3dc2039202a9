"""MJCF robots (avips_jax.kinematics.mjcf): FK of every body against MuJoCo's own mj_kinematics on
random configurations (float64, <= 1e-9 m), and the same chain selection and refusals as URDF."""

import jax
import numpy as np
import pytest

from avips_jax import kinematics
from avips_jax.kinematics import errors, mjcf
from avips_jax.targets import ik_robot, make_target

mujoco = pytest.importorskip("mujoco")

# Everything MJCF allows for placing frames: degrees, defaults classes, euler / quat / axisangle /
# xyaxes / zaxis, a joint anchored off its body's origin, two joints in one body, a free-floating
# base, unnamed bodies, a slide, an unlimited hinge, and geoms that give the masses.
ARM = """<mujoco model="test_arm">
  <compiler angle="degree"/>
  <default>
    <joint damping="1" range="-150 150"/>
    <default class="wrist"><joint range="-90 90" axis="0 1 0"/></default>
  </default>
  <worldbody>
    <body name="pedestal" pos="0.1 -0.2 0.05" euler="0 0 20">
      <geom type="cylinder" size="0.05 0.05"/>
      <body name="link1" pos="0 0 0.1" quat="0.95 0.05 0.1 0.2">
        <joint name="j1" axis="0 0 1"/>
        <geom type="capsule" size="0.03 0.1"/>
        <body name="link2" pos="0 0 0.2" axisangle="1 0 0 30">
          <joint name="j2" axis="0 1 0" pos="0 0 -0.05"/>
          <geom type="capsule" size="0.03 0.1" fromto="0 0 0 0.25 0 0"/>
          <body name="link3" pos="0.25 0 0" xyaxes="0 1 0 -1 0 0">
            <joint name="j3" class="wrist" pos="0.02 0 0"/>
            <joint name="j4" axis="1 0 0" limited="false"/>
            <geom type="box" size="0.02 0.02 0.1"/>
            <body pos="0 0 0.1" zaxis="0 1 1">
              <joint name="slide" type="slide" axis="0 0 1" range="0 0.05"/>
              <geom type="sphere" size="0.02"/>
              <body name="tool" pos="0 0 0.08" euler="10 20 30"/>
            </body>
          </body>
        </body>
      </body>
    </body>
    <body name="ball" pos="1 0 0"><freejoint/><geom type="sphere" size="0.1"/></body>
  </worldbody>
</mujoco>
"""


@pytest.fixture(scope="module")
def arm_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("mjcf") / "arm.xml"
    path.write_text(ARM)
    return path


def _mujoco_body_poses(model, qpos):
    """(nbody, 4, 4) world poses of every body from mj_kinematics, float64."""
    data = mujoco.MjData(model)
    data.qpos[:] = qpos
    mujoco.mj_kinematics(model, data)
    poses = np.tile(np.eye(4), (model.nbody, 1, 1))
    poses[:, :3, :3] = data.xmat.reshape(-1, 3, 3)
    poses[:, :3, 3] = data.xpos
    return poses


def test_fk_of_every_body_matches_mujoco(arm_file):
    jax.config.update("jax_enable_x64", True)
    try:
        robot = kinematics.load_robot(arm_file, root="world", tips=("tool",))
        model = mujoco.MjModel.from_xml_path(str(arm_file))
        assert robot.joint_names == ("j1", "j2", "j3", "j4", "slide")
        names = [model.body(i).name or f"body{i}" for i in range(model.nbody) if i != 7]
        rng = np.random.default_rng(0)
        lower, upper = np.maximum(robot.lower, -np.pi), np.minimum(robot.upper, np.pi)
        for _ in range(20):
            q = lower + (upper - lower) * rng.uniform(size=robot.dof)
            qpos = np.zeros(model.nq)
            qpos[:5] = q
            qpos[5:8] = (1.0, 0.0, 0.0)  # the free ball: position (its links are off the chain)
            qpos[8:] = (1.0, 0.0, 0.0, 0.0)
            expected = _mujoco_body_poses(model, qpos)
            ours = np.asarray(robot.link_poses(np.asarray(q, np.float64), names))
            keep = [i for i in range(model.nbody) if i != 7]  # the free ball is not on the chain
            np.testing.assert_allclose(ours[:, :3, 3], expected[keep, :3, 3], atol=1e-9)
            np.testing.assert_allclose(ours[:, :3, :3], expected[keep, :3, :3], atol=1e-9)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_limits_types_and_masses_come_from_mujoco(arm_file):
    model = mjcf.load_mjcf(arm_file)
    j = model.joints
    assert (j["j1"].type, j["j1"].lower, j["j1"].upper) == (
        "revolute",
        pytest.approx(-150 * np.pi / 180),
        pytest.approx(150 * np.pi / 180),
    )
    assert j["j3"].upper == pytest.approx(np.pi / 2)  # the "wrist" class
    assert (j["j4"].type, j["j4"].upper) == ("continuous", pytest.approx(np.pi))
    assert (j["slide"].type, j["slide"].upper) == ("prismatic", pytest.approx(0.05))
    assert model.joints["joint5"].type == "floating"  # the unnamed free joint
    assert model.links["link1"].mass > 0  # from its capsule geom


def test_chain_selection_and_refusals_as_for_urdf(arm_file):
    target = make_target("ik", robot_name=str(arm_file), root="world", tip="tool")
    assert target.dim == 5
    assert len(target.skeleton_edges) == len(target.skeleton_links) - 1  # the plots' stick figure
    locked = ik_robot.load(str(arm_file), root="world", tip="tool", locked="slide=0.01")
    assert locked.joint_names == ("j1", "j2", "j3", "j4")
    with pytest.raises(errors.ChainError, match="root links|leaf links"):
        ik_robot.load(str(arm_file))  # world holds two trees: the arm and the ball
    with pytest.raises(errors.UnsupportedJointError, match="floating"):
        ik_robot.load(str(arm_file), root="world", tip="ball")


def test_missing_meshes_and_bad_files_are_handled(tmp_path):
    with_mesh = ARM.replace(
        '<geom type="sphere" size="0.02"/>', '<geom type="mesh" mesh="gripper"/>'
    ).replace("<worldbody>", '<asset><mesh name="gripper" file="missing.stl"/></asset><worldbody>')
    path = tmp_path / "meshes.xml"
    path.write_text(with_mesh)
    model = mjcf.load_mjcf(path)  # the mesh file is not there: kinematics only, no masses
    assert "slide" in model.joints and all(v is None for v in model.links.values())
    bad = tmp_path / "bad.xml"
    bad.write_text("<mujoco><worldbody><body><joint type='slide'/></body></worldbody></mujoco>")
    with pytest.raises(errors.InvalidUrdfError, match="slide joint 'joint0' has no range"):
        mjcf.load_mjcf(bad)
    broken = tmp_path / "broken.xml"
    broken.write_text("<mujoco><worldbody><body>")
    with pytest.raises(errors.MalformedUrdfError, match="broken.xml"):
        mjcf.load_mjcf(broken)
    with pytest.raises(errors.UrdfFileNotFoundError, match="MJCF file not found"):
        mjcf.load_mjcf(tmp_path / "none.xml")
