"""The robot of an IK target: a registered name, or a robot file with a chosen root, tip, joint
subset and locked joints, checked so that a run on it can train.

    robot = ik_robot.load("panda")                                   # registered name
    robot = ik_robot.load("ur5.urdf", tip="tool0")                   # a file of your own
    robot = ik_robot.load("panda.urdf", tip="panda_leftfinger",
                          locked="panda_finger_joint1=0.02")

The selection is given as strings (config- and CLI-friendly, and hashable, since IK targets are
static jit arguments): `joint_names` "j1,j2,..." (empty: every movable joint on the root -> tip
path),
`locked` "joint=value,..." (rad or m). An empty `root` is the file's root link; an empty `tip` is
the one leaf link below the root (a file with several asks for a choice, listing them).

Checks, each a `kinematics.KinematicsError` (a ValueError) naming the problem: no movable joint
on the path, a tip that none of the chosen joints moves, a joint that does not move the tip, a
tip not below the root (`tree.build_tree`), unknown links or joints.
"""

import functools

import numpy as np

from avips_jax import kinematics
from avips_jax.kinematics import errors, urdf
from avips_jax.kinematics import robot as robot_lib
from avips_jax.kinematics import robots as robots_lib
from avips_jax.kinematics import tree as tree_lib

__all__ = ["load", "parse_joint_values", "parse_names"]

# A dof "moves the tip" if some sampled configuration gives its column of the 6-D Jacobian a norm
# above this (m or rad per unit of the joint).
MOTION_TOL = 1e-6
_NUM_PROBES = 16


def parse_names(spec: str) -> tuple[str, ...]:
    """ "a, b,c" -> ("a", "b", "c"); "" -> ()."""
    return tuple(name.strip() for name in str(spec).split(",") if name.strip())


def parse_joint_values(spec: str) -> dict[str, float]:
    """ "j1=0.02, j2=0" -> {"j1": 0.02, "j2": 0.0}; "" -> {}.

    Raises:
        ValueError: an entry that is not name=number, or a joint named twice.
    """
    values: dict[str, float] = {}
    for item in parse_names(spec):
        name, sep, raw = item.partition("=")
        name = name.strip()
        try:
            value = float(raw)
        except ValueError:
            value = None
        if not sep or not name or value is None or not np.isfinite(value):
            raise ValueError(
                f"locked joints must be 'name=value[,name=value...]' with finite values, got "
                f"{item!r} in {spec!r}"
            )
        if name in values:
            raise ValueError(f"joint {name!r} is locked twice in {spec!r}")
        values[name] = value
    return values


@functools.cache
def load(
    robot: str, root: str = "", tip: str = "", joint_names: str = "", locked: str = ""
) -> robot_lib.Robot:
    """The checked robot of an IK target (see the module docstring); one object per selection
    and process, so jit caches keyed on it are reused.

    Raises:
        kinematics.KinematicsError (a ValueError): an unknown robot, file, link or joint; a
            selection on a registered robot; several leaf links and no tip; a robot that cannot
            move its tip.
        ValueError: a malformed `joint_names` or `locked` string.
    """
    selection = {"root": root, "tip": tip, "joint_names": joint_names, "locked": locked}
    if robots_lib.is_registered(robot):
        chosen = [f"{k}={v!r}" for k, v in selection.items() if v]
        if chosen:
            raise errors.KinematicsError(
                f"{robot!r} is a registered robot with a fixed chain; {', '.join(chosen)} apply "
                f"to robot files only (the file behind it: {robots_lib.describe_source(robot)})"
            )
        loaded = kinematics.load_robot(robot)
    else:
        model = robots_lib.load_model(robot)
        root = root or None
        tip = tip or _single_leaf(model, root, robot)
        loaded = robot_lib.robot_from_model(
            model,
            root=root,
            tips=(tip,),
            joint_names=parse_names(joint_names) or None,
            locked=parse_joint_values(locked),
            source=str(robot),
        )
    _check_moves_tip(loaded, robot)
    return loaded


def _single_leaf(model: urdf.UrdfModel, root: str | None, robot: str) -> str:
    """The one leaf below `root`; ChainError listing them where there are several."""
    start = root if root is not None else _file_root(model, robot)
    if start not in model.links:
        raise errors.UnknownLinkError(
            f"unknown root link {start!r} in {robot} (links: {', '.join(model.links)})"
        )
    leaves = tree_lib.leaf_links(model, start)
    if len(leaves) != 1:
        raise errors.ChainError(
            f"{robot}: {len(leaves)} leaf links below {start!r} ({', '.join(leaves)}); choose the "
            "end effector with tip=<link> (--config.target.kwargs.tip=<link>)"
        )
    return leaves[0]


def _file_root(model: urdf.UrdfModel, robot: str) -> str:
    roots = model.root_links
    if len(roots) != 1:
        raise errors.ChainError(
            f"{robot}: the kinematic tree is not connected (root links {', '.join(roots)}); "
            "choose one with root=<link> (--config.target.kwargs.root=<link>)"
        )
    return roots[0]


def _check_moves_tip(robot: robot_lib.Robot, source: str) -> None:
    """KinematicsError unless the robot has a dof and every dof moves the end effector (its
    position or orientation) somewhere in the joint limits."""
    tip = robot.end_effector
    if robot.dof == 0:
        raise errors.ChainError(
            f"{source}: no movable joint between root {robot.root_link!r} and tip {tip!r}; "
            "choose another tip (or unlock a joint)"
        )
    lower, upper = np.array(robot.lower), np.array(robot.upper)
    lower, upper = np.maximum(lower, -np.pi), np.minimum(upper, np.pi)  # continuous joints
    u = np.random.default_rng(0).uniform(size=(_NUM_PROBES, robot.dof))
    jac = np.asarray(robot.jacobian(lower + (upper - lower) * u))  # (P, 6, dof)
    motion = np.max(np.linalg.norm(jac, axis=-2), axis=0)  # (dof,)
    still = [name for name, m in zip(robot.joint_names, motion, strict=True) if m <= MOTION_TOL]
    if len(still) == robot.dof:
        raise errors.ChainError(
            f"{source}: tip {tip!r} does not move with any joint ({', '.join(still)}); "
            "choose a tip below them"
        )
    if still:
        raise errors.ChainError(
            f"{source}: joint(s) {', '.join(still)} do not move tip {tip!r}; leave them out "
            "of joint_names=... or lock them"
        )
