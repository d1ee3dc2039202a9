"""Parses URDF XML into a static numpy description of links, joints and inertials.

Only kinematics and mass data are read: `<visual>`, `<collision>`, `package://` mesh references,
`<transmission>` and `<gazebo>` elements are ignored, so no mesh file is ever needed.

Joint convention (URDF): T_child = T_parent · Trans(xyz) · Rz(yaw)·Ry(pitch)·Rx(roll) · Rot(axis, q)
(a translation along the axis for prismatic joints).
"""

import dataclasses
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping

import numpy as np

from avips_jax.kinematics import errors

MOVABLE_TYPES = ("revolute", "continuous", "prismatic")
JOINT_TYPES = MOVABLE_TYPES + ("fixed", "floating", "planar")


@dataclasses.dataclass(frozen=True)
class Mimic:
    """A `<mimic>` element: q = multiplier · q[joint] + offset."""

    joint: str
    multiplier: float = 1.0
    offset: float = 0.0


@dataclasses.dataclass(frozen=True, eq=False)
class Joint:
    """One URDF joint.

    Attributes:
        name: joint name.
        type: one of `JOINT_TYPES`.
        parent, child: link names.
        origin: (4, 4) float64, Trans(xyz) · Rz·Ry·Rx(rpy) of the `<origin>` element.
        axis: (3,) float64 unit axis (URDF default (1, 0, 0)).
        lower, upper: limits in rad (or m); [-pi, pi] for continuous joints and for revolute
            joints without a `<limit>` element; 0 for fixed joints.
        mimic: the `<mimic>` element, if any.
    """

    name: str
    type: str
    parent: str
    child: str
    origin: np.ndarray
    axis: np.ndarray
    lower: float
    upper: float
    mimic: Mimic | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Inertial:
    """Mass (kg) and centre of mass (3,) in m, in the link frame."""

    mass: float
    com: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class UrdfModel:
    """A parsed URDF: links (name -> inertial or None) and joints (name -> Joint), file order."""

    name: str
    links: Mapping[str, Inertial | None]
    joints: Mapping[str, Joint]

    @property
    def parent_joint(self) -> dict[str, Joint]:
        """Child link name -> the joint that attaches it to its parent."""
        return {j.child: j for j in self.joints.values()}

    @property
    def root_links(self) -> tuple[str, ...]:
        """Links without a parent joint (a valid URDF has exactly one)."""
        children = {j.child for j in self.joints.values()}
        return tuple(name for name in self.links if name not in children)


def rpy_matrix(rpy: np.ndarray) -> np.ndarray:
    """Rz(yaw) · Ry(pitch) · Rx(roll) as a (3, 3) float64 matrix; rpy = (roll, pitch, yaw)."""
    r, p, y = (float(v) for v in rpy)
    cr, sr, cp, sp, cy, sy = (
        math.cos(r),
        math.sin(r),
        math.cos(p),
        math.sin(p),
        math.cos(y),
        math.sin(y),
    )
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation by `angle` (rad) about the unit `axis` (Rodrigues), (3, 3) float64."""
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def joint_motion(joint: Joint, value: float) -> np.ndarray:
    """The (4, 4) float64 transform origin · motion(value) of a joint held at `value`."""
    motion = np.eye(4)
    if joint.type in ("revolute", "continuous"):
        motion[:3, :3] = axis_angle_matrix(joint.axis, value)
    elif joint.type == "prismatic":
        motion[:3, 3] = joint.axis * value
    return joint.origin @ motion


def load_urdf(path: str | os.PathLike) -> UrdfModel:
    """Reads and parses a URDF file.

    Raises:
        UrdfFileNotFoundError: the file does not exist.
        MalformedUrdfError, NotUrdfError, InvalidUrdfError, MimicError: see `parse_urdf`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise errors.UrdfFileNotFoundError(f"URDF file not found: {path!r}")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return parse_urdf(text, source=path)


def parse_urdf(text: str, source: str = "<string>") -> UrdfModel:
    """Parses URDF XML text into a `UrdfModel`.

    Args:
        text: the XML document.
        source: where it came from, for error messages.

    Raises:
        MalformedUrdfError: not well-formed XML.
        NotUrdfError: the root element is not `<robot>`.
        InvalidUrdfError: a missing or inconsistent element (joint to an unknown link, a link
            with two parents, a kinematic cycle, an unknown joint type, a zero axis, ...).
        MimicError: a `<mimic>` to an unknown joint, or a mimic cycle.
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise errors.MalformedUrdfError(f"malformed XML in URDF {source}: {e}") from e
    if root.tag != "robot":
        raise errors.NotUrdfError(f"{source} is not a URDF: root element <{root.tag}>, not <robot>")
    links: dict[str, Inertial | None] = {}
    for elem in root.findall("link"):
        name = _attr(elem, "name", source, "<link>")
        if name in links:
            raise errors.InvalidUrdfError(f"{source}: link {name!r} defined twice")
        links[name] = _parse_inertial(elem, source)
    joints: dict[str, Joint] = {}
    for elem in root.findall("joint"):
        joint = _parse_joint(elem, source)
        if joint.name in joints:
            raise errors.InvalidUrdfError(f"{source}: joint {joint.name!r} defined twice")
        joints[joint.name] = joint
    model = UrdfModel(name=root.get("name", "robot"), links=links, joints=joints)
    _validate(model, source)
    return model


def _attr(elem: ET.Element, key: str, source: str, what: str) -> str:
    value = elem.get(key)
    if value is None:
        raise errors.InvalidUrdfError(f"{source}: {what} without a {key!r} attribute")
    return value


def _floats(text: str | None, n: int, default: tuple[float, ...], source: str, what: str):
    if text is None:
        return np.array(default, dtype=np.float64)
    try:
        values = np.array([float(v) for v in text.split()], dtype=np.float64)
    except ValueError as e:
        raise errors.InvalidUrdfError(f"{source}: {what}={text!r} is not a number list") from e
    if values.shape != (n,) or not np.all(np.isfinite(values)):
        raise errors.InvalidUrdfError(f"{source}: {what}={text!r} must be {n} finite numbers")
    return values


def _origin(elem: ET.Element | None, source: str, what: str) -> np.ndarray:
    """The (4, 4) transform of an `<origin xyz rpy>` element (identity when absent)."""
    xyz_text = None if elem is None else elem.get("xyz")
    rpy_text = None if elem is None else elem.get("rpy")
    transform = np.eye(4)
    transform[:3, :3] = rpy_matrix(_floats(rpy_text, 3, (0.0,) * 3, source, f"{what} rpy"))
    transform[:3, 3] = _floats(xyz_text, 3, (0.0,) * 3, source, f"{what} xyz")
    return transform


def _parse_inertial(link: ET.Element, source: str) -> Inertial | None:
    elem = link.find("inertial")
    if elem is None:
        return None
    what = f"<inertial> of link {link.get('name')!r}"
    mass_elem = elem.find("mass")
    mass_text = None if mass_elem is None else mass_elem.get("value")
    if mass_text is None:
        raise errors.InvalidUrdfError(f"{source}: {what} has no <mass value=...>")
    (mass,) = _floats(mass_text, 1, (0.0,), source, f"{what} mass")
    if mass < 0:
        raise errors.InvalidUrdfError(f"{source}: {what} has a negative mass {mass}")
    com = _origin(elem.find("origin"), source, what)[:3, 3]
    return Inertial(mass=float(mass), com=com)


def _parse_joint(elem: ET.Element, source: str) -> Joint:
    name = _attr(elem, "name", source, "<joint>")
    what = f"joint {name!r}"
    jtype = _attr(elem, "type", source, what)
    if jtype not in JOINT_TYPES:
        raise errors.InvalidUrdfError(f"{source}: {what} has unknown type {jtype!r}")
    parent, child = elem.find("parent"), elem.find("child")
    if parent is None or child is None:
        raise errors.InvalidUrdfError(f"{source}: {what} needs <parent> and <child> elements")
    axis_elem = elem.find("axis")
    axis = _floats(None if axis_elem is None else axis_elem.get("xyz"), 3, (1, 0, 0), source, what)
    norm = float(np.linalg.norm(axis))
    if jtype in MOVABLE_TYPES and norm < 1e-12:
        raise errors.InvalidUrdfError(f"{source}: {what} has a zero axis")
    lower, upper = _limits(elem, jtype, source, what)
    mimic_elem = elem.find("mimic")
    mimic = None
    if mimic_elem is not None:
        mimic = Mimic(
            joint=_attr(mimic_elem, "joint", source, f"<mimic> of {what}"),
            multiplier=float(_floats(mimic_elem.get("multiplier"), 1, (1.0,), source, what)[0]),
            offset=float(_floats(mimic_elem.get("offset"), 1, (0.0,), source, what)[0]),
        )
    return Joint(
        name=name,
        type=jtype,
        parent=_attr(parent, "link", source, f"<parent> of {what}"),
        child=_attr(child, "link", source, f"<child> of {what}"),
        origin=_origin(elem.find("origin"), source, what),
        axis=axis / norm if norm > 0 else axis,
        lower=lower,
        upper=upper,
        mimic=mimic,
    )


def _limits(elem: ET.Element, jtype: str, source: str, what: str) -> tuple[float, float]:
    limit = elem.find("limit")
    if jtype == "continuous" or (jtype == "revolute" and limit is None):
        return -math.pi, math.pi
    if jtype != "prismatic" and jtype != "revolute":
        return 0.0, 0.0
    if limit is None:
        raise errors.InvalidUrdfError(f"{source}: prismatic {what} has no <limit> element")
    lower = float(_floats(limit.get("lower"), 1, (0.0,), source, f"{what} lower")[0])
    upper = float(_floats(limit.get("upper"), 1, (0.0,), source, f"{what} upper")[0])
    if lower > upper:
        raise errors.InvalidUrdfError(f"{source}: {what} has lower {lower} > upper {upper}")
    return lower, upper


def _validate(model: UrdfModel, source: str) -> None:
    """Checks link references, single parents, no cycles and mimic targets."""
    parents: dict[str, str] = {}
    for joint in model.joints.values():
        for role, link in (("parent", joint.parent), ("child", joint.child)):
            if link not in model.links:
                raise errors.InvalidUrdfError(
                    f"{source}: joint {joint.name!r} has unknown {role} link {link!r}"
                )
        if joint.child in parents:
            raise errors.InvalidUrdfError(
                f"{source}: link {joint.child!r} has two parent joints "
                f"({parents[joint.child]!r} and {joint.name!r})"
            )
        parents[joint.child] = joint.name
    if model.links and not model.root_links:
        raise errors.InvalidUrdfError(f"{source}: the joints form a cycle (no root link)")
    parent_joint = model.parent_joint
    for link in model.links:
        seen = set()
        while link in parent_joint:
            if link in seen:
                raise errors.InvalidUrdfError(f"{source}: kinematic cycle through link {link!r}")
            seen.add(link)
            link = parent_joint[link].parent
    for joint in model.joints.values():
        _resolve_mimic(model, joint, source)


def _resolve_mimic(model: UrdfModel, joint: Joint, source: str) -> tuple[str, float, float]:
    """Follows mimic references: (independent joint, multiplier, offset) with q = m·q_ind + o."""
    name, multiplier, offset, seen = joint.name, 1.0, 0.0, []
    while model.joints[name].mimic is not None:
        mimic = model.joints[name].mimic
        seen.append(name)
        if mimic.joint not in model.joints:
            raise errors.MimicError(
                f"{source}: joint {name!r} mimics unknown joint {mimic.joint!r}"
            )
        if mimic.joint in seen:
            raise errors.MimicError(f"{source}: mimic cycle {' -> '.join(seen + [mimic.joint])}")
        # q_joint = multiplier·q_name + offset and q_name = m·q_next + o.
        multiplier, offset = multiplier * mimic.multiplier, multiplier * mimic.offset + offset
        name = mimic.joint
    return name, multiplier, offset


def resolve_mimic(model: UrdfModel, joint_name: str) -> tuple[str, float, float]:
    """(independent joint, multiplier, offset) such that q[joint] = m · q[independent] + o."""
    return _resolve_mimic(model, model.joints[joint_name], model.name)
