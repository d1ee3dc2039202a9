"""Independent references for the kinematics tests: pinocchio and yourdfpy on the same files."""

import functools
import io

import numpy as np
import pinocchio as pin
import yourdfpy

from avips_jax import kinematics


def random_q(robot, n, seed=0):
    """(n, dof) float64 joint values uniform within the limits."""
    return np.random.default_rng(seed).uniform(robot.lower, robot.upper, (n, robot.dof))


class PinReference:
    """pinocchio FK of a robot's URDF, with q mapped by joint name (other joints at 0)."""

    def __init__(self, robot, free_flyer=False):
        path = str(kinematics.urdf_path(robot.name))
        if free_flyer:
            self.model = pin.buildModelFromUrdf(path, pin.JointModelFreeFlyer())
        else:
            self.model = pin.buildModelFromUrdf(path)
        self.data = self.model.createData()
        self.robot = robot
        self.index = [self.model.joints[self.model.getJointId(j)].idx_q for j in robot.joint_names]

    def config(self, q, base=None):
        full = pin.neutral(self.model)
        full[self.index] = q
        if base is not None:
            full[:7] = base
        return full

    def poses(self, q, links, base=None):
        """(len(links), 4, 4) link placements for one configuration q (dof,)."""
        pin.forwardKinematics(self.model, self.data, self.config(q, base))
        pin.updateFramePlacements(self.model, self.data)
        return np.stack([self.data.oMf[self.model.getFrameId(link)].homogeneous for link in links])


@functools.cache
def pin_reference(name, free_flyer=False):
    """A cached `PinReference` of a registered robot."""
    return PinReference(kinematics.load_robot(name), free_flyer)


def yourdfpy_model(path=None, text=None):
    """A yourdfpy model without meshes, from a file or URDF text."""
    source = path if path is not None else io.StringIO(text)
    return yourdfpy.URDF.load(source, load_meshes=False, build_collision_scene_graph=False)


def yourdfpy_poses(model, cfg, links, root):
    """(len(links), 4, 4) poses in the root frame for a {joint: value} configuration."""
    model.update_cfg(cfg)
    return np.stack([model.get_transform(link, root) for link in links])
