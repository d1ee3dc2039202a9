"""Extracts a kinematic tree (root -> tips) from a parsed URDF and folds everything static.

Terms:
    dof: an actuated joint (an entry of q); `joint_names` lists them in q order.
    body: a frame moved by a joint whose value depends on q (a dof, or a mimic of one):
        T_body = T_parent_body · offset · Motion(q_eff), with `offset` the fixed transforms between
        the parent body and the joint (folded fixed joints, locked joints, the joint origin) and
        q_eff = multiplier · q[dof] + bias (1 and 0 unless a mimic).
    link frame: every link of the model is a body frame (or the root) times a constant (4, 4).

Joints that are neither dofs nor mimics of dofs are held at a constant: their `locked` value, else 0
(for mimic joints: multiplier · (held value of the source) + offset). Links outside the root's
subtree are placed with every joint above the root at its held value.
"""

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from avips_jax.kinematics import errors, urdf

ROOT = -1  # anchor index of the root frame


@dataclasses.dataclass(frozen=True, eq=False)
class Body:
    """A frame moved by one joint (see module docstring). Arrays are float64."""

    joint: str
    parent: int  # body index, or ROOT
    offset: np.ndarray  # (4, 4)
    kind: str  # "revolute" (also continuous) or "prismatic"
    axis: np.ndarray  # (3,) unit
    dof: int
    multiplier: float
    bias: float


@dataclasses.dataclass(frozen=True, eq=False)
class KinematicTree:
    """Static description of the FK problem; immutable, hashed by identity (safe as jit static).

    Attributes:
        root, tips: link names.
        joint_names: dofs in q order; lower, upper: (dof,) float64 limits.
        bodies: in topological order (parents first).
        link_frames: every model link -> (anchor body index or ROOT, (4, 4) constant).
        chain_links: links on the root -> tip paths, root first.
        anchor_mass: (len(bodies) + 1,) mass (kg) attached to each anchor (index 0: the root).
        anchor_com: (len(bodies) + 1, 3) centre of that mass in the anchor frame (m).
    """

    root: str
    tips: tuple[str, ...]
    joint_names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    bodies: tuple[Body, ...]
    link_frames: Mapping[str, tuple[int, np.ndarray]]
    chain_links: tuple[str, ...]
    anchor_mass: np.ndarray
    anchor_com: np.ndarray

    @property
    def dof(self) -> int:
        return len(self.joint_names)


def build_tree(
    model: urdf.UrdfModel,
    root: str | None = None,
    tips: Sequence[str] | None = None,
    joint_names: Sequence[str] | None = None,
    locked: Mapping[str, float] | None = None,
) -> KinematicTree:
    """Builds the kinematic tree of `model` from `root` to `tips`.

    Args:
        model: a parsed URDF.
        root: the base link (default: the URDF's root link).
        tips: links whose root paths form the chain (default: the leaves below `root`).
        joint_names: the dofs in q order (default: the movable joints on the paths, in tip order,
            root to tip, each once; a mimic joint contributes the joint it mimics). Any movable,
            non-mimic joint below `root` may be named.
        locked: joints held at a value (rad or m) instead of being dofs.

    Raises:
        UnknownLinkError, UnknownJointError: a name that the URDF does not define.
        ChainError: a tip not below the root, or a movable joint on the paths that is neither a
            dof nor locked, or a dof outside the root's subtree.
        UnsupportedJointError: a floating or planar joint on the paths.
    """
    locked = dict(locked or {})
    root = _default_root(model) if root is None else root
    _check_links(model, [root], "root")
    subtree = _subtree(model, root)
    tips = tuple(leaf_links(model, root) if tips is None else tips)
    if not tips:
        raise errors.ChainError("no tip links given")
    _check_links(model, tips, "tip")
    paths = [_path(model, root, tip) for tip in tips]
    path_joints = list(dict.fromkeys(j for path in paths for j in path))
    _check_locked(model, locked)
    dofs = _select_dofs(model, path_joints, joint_names, locked, subtree)
    bodies, link_frames = _fold(model, root, dofs, locked)
    lower = np.array([model.joints[j].lower for j in dofs], dtype=np.float64)
    upper = np.array([model.joints[j].upper for j in dofs], dtype=np.float64)
    anchor_mass, anchor_com = _aggregate_masses(model, link_frames, len(bodies))
    chain_links = tuple(dict.fromkeys([root] + [model.joints[j].child for j in path_joints]))
    for array in (lower, upper, anchor_mass, anchor_com):
        array.setflags(write=False)
    return KinematicTree(
        root=root,
        tips=tips,
        joint_names=tuple(dofs),
        lower=lower,
        upper=upper,
        bodies=tuple(bodies),
        link_frames=link_frames,
        chain_links=chain_links,
        anchor_mass=anchor_mass,
        anchor_com=anchor_com,
    )


def _default_root(model: urdf.UrdfModel) -> str:
    roots = model.root_links
    if len(roots) != 1:
        raise errors.ChainError(f"URDF {model.name!r} has root links {roots}; pass root=...")
    return roots[0]


def _check_links(model: urdf.UrdfModel, links: Sequence[str], role: str) -> None:
    for link in links:
        if link not in model.links:
            raise errors.UnknownLinkError(
                f"unknown {role} link {link!r} in URDF {model.name!r} "
                f"(links: {', '.join(model.links)})"
            )


def _children(model: urdf.UrdfModel) -> dict[str, list[urdf.Joint]]:
    children: dict[str, list[urdf.Joint]] = {link: [] for link in model.links}
    for joint in model.joints.values():
        children[joint.parent].append(joint)
    return children


def _subtree(model: urdf.UrdfModel, root: str) -> list[str]:
    """Links below (and including) `root`, depth first, children in file order."""
    children, order, stack = _children(model), [], [root]
    while stack:
        link = stack.pop()
        order.append(link)
        stack.extend(j.child for j in reversed(children[link]))
    return order


def leaf_links(model: urdf.UrdfModel, root: str) -> list[str]:
    """The links without children below (and including) `root`, depth first in file order."""
    return _leaves(model, _subtree(model, root))


def _leaves(model: urdf.UrdfModel, subtree: list[str]) -> list[str]:
    children = _children(model)
    return [link for link in subtree if not children[link]]


def _path(model: urdf.UrdfModel, root: str, tip: str) -> list[str]:
    """Joint names from `root` down to `tip`."""
    parent_joint, joints, link = model.parent_joint, [], tip
    while link != root:
        if link not in parent_joint:
            raise errors.ChainError(
                f"tip link {tip!r} is not connected to root link {root!r}: walking up from "
                f"{tip!r} reaches the URDF root {link!r} without passing {root!r}"
            )
        joints.append(parent_joint[link].name)
        link = parent_joint[link].parent
    return joints[::-1]


def _check_locked(model: urdf.UrdfModel, locked: Mapping[str, float]) -> None:
    for name in locked:
        if name not in model.joints:
            raise errors.UnknownJointError(f"unknown locked joint {name!r} in {model.name!r}")
        if model.joints[name].type not in urdf.MOVABLE_TYPES:
            raise errors.ChainError(f"locked joint {name!r} is {model.joints[name].type}")


def _select_dofs(model, path_joints, joint_names, locked, subtree) -> list[str]:
    """The dofs in q order; checks that every movable joint on the paths is driven or held."""
    for name in path_joints:
        if model.joints[name].type in ("floating", "planar"):
            raise errors.UnsupportedJointError(
                f"joint {name!r} on the chain is {model.joints[name].type}; only revolute, "
                "continuous, prismatic and fixed joints (and mimics) are supported"
            )
    needed = []  # independent joints that drive the movable path joints, in path order
    for name in path_joints:
        if model.joints[name].type in urdf.MOVABLE_TYPES:
            source = urdf.resolve_mimic(model, name)[0]
            if source not in locked and model.joints[source].type in urdf.MOVABLE_TYPES:
                needed.append(source)
    needed = list(dict.fromkeys(needed))
    if joint_names is None:
        return needed
    _check_joint_names(model, list(joint_names), locked, set(subtree))
    missing = [j for j in needed if j not in joint_names]
    if missing:
        raise errors.ChainError(
            f"movable joints on the chain are neither in joint_names nor locked: {missing}"
        )
    return list(joint_names)


def _check_joint_names(model, joint_names, locked, subtree) -> None:
    if len(set(joint_names)) != len(joint_names):
        raise errors.ChainError(f"joint_names has duplicates: {joint_names}")
    for name in joint_names:
        if name not in model.joints:
            raise errors.UnknownJointError(
                f"unknown joint {name!r} in {model.name!r} (joints: {', '.join(model.joints)})"
            )
        joint = model.joints[name]
        if joint.type not in urdf.MOVABLE_TYPES:
            raise errors.ChainError(f"joint {name!r} is {joint.type} and cannot be a dof")
        if joint.mimic is not None:
            raise errors.ChainError(f"joint {name!r} mimics {joint.mimic.joint!r}; actuate that")
        if name in locked:
            raise errors.ChainError(f"joint {name!r} is both a dof and locked")
        if joint.child not in subtree:
            raise errors.ChainError(f"joint {name!r} is not below the root link")


def _held_value(model: urdf.UrdfModel, name: str, locked: Mapping[str, float]) -> float:
    source, multiplier, bias = urdf.resolve_mimic(model, name)
    return multiplier * float(locked.get(source, 0.0)) + bias


def _fold(model, root, dofs, locked):
    """Bodies (topological order) and every link's (anchor, constant transform)."""
    dof_index = {name: i for i, name in enumerate(dofs)}
    children = _children(model)
    bodies: list[Body] = []
    frames: dict[str, tuple[int, np.ndarray]] = {root: (ROOT, np.eye(4))}
    stack = [root]
    while stack:
        link = stack.pop()
        anchor, const = frames[link]
        for joint in reversed(children[link]):
            source, multiplier, bias = urdf.resolve_mimic(model, joint.name)
            if joint.type in urdf.MOVABLE_TYPES and source in dof_index:
                kind = "prismatic" if joint.type == "prismatic" else "revolute"
                bodies.append(
                    Body(joint.name, anchor, const @ joint.origin, kind, joint.axis,
                         dof_index[source], multiplier, bias)
                )  # fmt: skip
                frames[joint.child] = (len(bodies) - 1, np.eye(4))
            else:
                held = urdf.joint_motion(joint, _held_value(model, joint.name, locked))
                frames[joint.child] = (anchor, const @ held)
            stack.append(joint.child)
    frames.update(_outside_frames(model, root, frames, locked))
    return bodies, {link: frames[link] for link in model.links}


def _outside_frames(model, root, frames, locked) -> dict[str, tuple[int, np.ndarray]]:
    """Constant poses (in the root frame) of links outside the root's subtree."""
    children, world = _children(model), {}
    stack = [(link, np.eye(4)) for link in model.root_links]
    while stack:
        link, transform = stack.pop()
        world[link] = transform
        for joint in children[link]:
            held = urdf.joint_motion(joint, _held_value(model, joint.name, locked))
            stack.append((joint.child, transform @ held))
    root_inv = np.linalg.inv(world[root])
    return {link: (ROOT, root_inv @ t) for link, t in world.items() if link not in frames}


def _aggregate_masses(model, link_frames, n_bodies) -> tuple[np.ndarray, np.ndarray]:
    """Mass per anchor (index 0 = root, b + 1 = body b) and its centre in the anchor frame."""
    mass = np.zeros(n_bodies + 1)
    moment = np.zeros((n_bodies + 1, 3))
    for link, inertial in model.links.items():
        if inertial is None or inertial.mass == 0.0:
            continue
        anchor, const = link_frames[link]
        mass[anchor + 1] += inertial.mass
        moment[anchor + 1] += inertial.mass * (const[:3, :3] @ inertial.com + const[:3, 3])
    com = np.divide(moment, mass[:, None], out=np.zeros_like(moment), where=mass[:, None] > 0)
    return mass, com
