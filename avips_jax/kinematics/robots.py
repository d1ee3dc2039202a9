"""Robots by name (Panda, Valkyrie, Atlas, TALOS, planar arms) and `load_robot` for any URDF."""

import dataclasses
import functools
import importlib.metadata
import math
import os
import pathlib
import re
from collections.abc import Mapping, Sequence

from avips_jax.kinematics import errors, mjcf, urdf
from avips_jax.kinematics import robot as robot_lib


def _urdf_dir() -> pathlib.Path:
    """The project's URDF folder: top-level `urdf/` in a checkout, `avips_jax/urdf` in a wheel."""
    checkout = pathlib.Path(__file__).resolve().parents[2] / "urdf"
    if checkout.is_dir():
        return checkout
    return pathlib.Path(__file__).resolve().parents[1] / "urdf"


URDF_DIR = _urdf_dir()
_ERD_ROBOTS = "cmeel.prefix/share/example-robot-data/robots"
_PLANAR = re.compile(r"planar_(\d+)")

_VALKYRIE_TORSO = ("torsoYaw", "torsoPitch", "torsoRoll")
_VALKYRIE_SHOULDER = ("leftShoulderPitch", "leftShoulderRoll", "leftShoulderYaw")
_VALKYRIE_ARM = ("leftElbowPitch", "leftForearmYaw", "leftWristRoll", "leftWristPitch")
_ATLAS_BACK = ("back_lbz", "back_mby", "back_ubx")
_ATLAS_ARM = ("l_arm_usy", "l_arm_shx", "l_arm_ely", "l_arm_elx", "l_arm_uwy", "l_arm_mwx")
_TALOS_JOINTS = (
    ("torso_1_joint", "torso_2_joint")
    + tuple(f"arm_right_{i}_joint" for i in range(1, 8))
    + tuple(f"arm_left_{i}_joint" for i in range(1, 8))
    + tuple(f"leg_right_{i}_joint" for i in range(1, 7))
    + tuple(f"leg_left_{i}_joint" for i in range(1, 7))
)


@dataclasses.dataclass(frozen=True)
class _Spec:
    """How to build a registered robot."""

    path: str  # "erd:<path under example-robot-data/robots>" or a file name in URDF_DIR
    root: str
    tips: tuple[str, ...]
    joint_names: tuple[str, ...]
    locked: tuple[str, ...] = ()  # held at 0


_REGISTRY = {
    "panda": _Spec(
        "erd:panda_description/urdf/panda.urdf",
        "panda_link0",
        ("panda_hand",),
        tuple(f"panda_joint{i}" for i in range(1, 8)),
    ),
    "valkyrie": _Spec(
        "valkyrie.urdf",
        "pelvis",
        ("leftPalm",),
        _VALKYRIE_TORSO + _VALKYRIE_SHOULDER + _VALKYRIE_ARM,
    ),
    "valkyrie_arm_shoulder": _Spec(
        "valkyrie.urdf",
        "pelvis",
        ("leftPalm",),
        _VALKYRIE_SHOULDER + _VALKYRIE_ARM,
        _VALKYRIE_TORSO,
    ),
    "valkyrie_arm": _Spec(
        "valkyrie.urdf",
        "pelvis",
        ("leftPalm",),
        _VALKYRIE_ARM,
        _VALKYRIE_TORSO + _VALKYRIE_SHOULDER,
    ),
    "atlas": _Spec("atlas.urdf", "pelvis", ("l_hand",), _ATLAS_BACK + _ATLAS_ARM),
    "atlas_arm": _Spec("atlas.urdf", "pelvis", ("l_hand",), _ATLAS_ARM, _ATLAS_BACK),
    "talos": _Spec(
        "erd:talos_data/robots/talos_reduced.urdf",
        "base_link",
        ("gripper_left_base_link", "gripper_right_base_link", "left_sole_link", "right_sole_link"),
        _TALOS_JOINTS,
    ),
}


def available_robots() -> tuple[str, ...]:
    """Names accepted by `load_robot` (plus "planar_<n>" for any n >= 1)."""
    return tuple(_REGISTRY)


def example_robot_data_path(relative: str) -> pathlib.Path:
    """A file of the `example-robot-data` wheel, e.g. "panda_description/urdf/panda.urdf"."""
    try:
        dist = importlib.metadata.distribution("example-robot-data")
    except importlib.metadata.PackageNotFoundError as e:
        raise errors.UrdfFileNotFoundError(
            "the example-robot-data package is not installed (pip install example-robot-data)"
        ) from e
    return pathlib.Path(dist.locate_file(f"{_ERD_ROBOTS}/{relative}"))


def urdf_path(name: str) -> pathlib.Path:
    """The URDF file behind a registered robot name."""
    spec = _REGISTRY[name]
    if spec.path.startswith("erd:"):
        return example_robot_data_path(spec.path[len("erd:") :])
    return URDF_DIR / spec.path


@functools.cache
def _registered(name: str) -> robot_lib.Robot:
    """One `Robot` per name and process (so jit caches keyed on it are reused)."""
    spec = _REGISTRY[name]
    path = urdf_path(name)
    return robot_lib.robot_from_model(
        urdf.load_urdf(path),
        name=name,
        root=spec.root,
        tips=spec.tips,
        joint_names=spec.joint_names,
        locked=dict.fromkeys(spec.locked, 0.0),
        source=str(path),
    )


def is_registered(name: str | os.PathLike) -> bool:
    """Whether `name` is a registered robot name or "planar_<n>" (n >= 1)."""
    key = os.fspath(name)
    match = _PLANAR.fullmatch(key)
    return key in _REGISTRY or (match is not None and int(match.group(1)) >= 1)


def describe_source(name: str) -> str:
    """Where a registered robot comes from: its URDF file, or "generated" for planar arms."""
    return str(urdf_path(name)) if name in _REGISTRY else "generated"


def load_model(path: str | os.PathLike) -> urdf.UrdfModel:
    """The parsed robot file at `path`: MJCF for a ".xml" file (`mjcf.load_mjcf`, needs the
    mujoco package), URDF otherwise.

    Raises:
        UnknownRobotError: `path` is neither a file nor looks like one (a mistyped robot name).
        UrdfFileNotFoundError: a file path that does not exist.
        NotUrdfError, MalformedUrdfError, InvalidUrdfError: see `urdf.load_urdf` and
            `mjcf.load_mjcf`.
    """
    key = os.fspath(path)
    if not _looks_like_file(key):
        raise _unknown_robot(key)
    if key.lower().endswith(".xml"):
        return mjcf.load_mjcf(key)
    return urdf.load_urdf(key)


def _looks_like_file(key: str) -> bool:
    return key.lower().endswith((".urdf", ".xml")) or os.sep in key or os.path.exists(key)


def _unknown_robot(key: str) -> errors.UnknownRobotError:
    return errors.UnknownRobotError(
        f"unknown robot {key!r}; available: {', '.join(available_robots())}, planar_<n> "
        "(n >= 1), or a path to a .urdf or MJCF .xml file"
    )


def planar_urdf(n: int) -> str:
    """URDF text of an n-link planar arm: links `link_1..link_n` of length 1/n along x, revolute
    z joints `joint_1..joint_n` with limits [-pi, pi], root `base`, tip `end_effector`."""
    length = 1.0 / n
    parts = [f'<robot name="planar_{n}">', '  <link name="base"/>']
    parent = "base"
    for i in range(1, n + 1):
        x = 0.0 if i == 1 else length
        parts += [
            f'  <link name="link_{i}"/>',
            f'  <joint name="joint_{i}" type="revolute"><parent link="{parent}"/>'
            f'<child link="link_{i}"/><origin xyz="{x!r} 0 0"/><axis xyz="0 0 1"/>'
            f'<limit lower="{-math.pi!r}" upper="{math.pi!r}"/></joint>',
        ]
        parent = f"link_{i}"
    parts += [
        '  <link name="end_effector"/>',
        f'  <joint name="end_effector_joint" type="fixed"><parent link="{parent}"/>'
        f'<child link="end_effector"/><origin xyz="{length!r} 0 0"/></joint>',
        "</robot>",
    ]
    return "\n".join(parts)


@functools.cache
def _planar(n: int) -> robot_lib.Robot:
    model = urdf.parse_urdf(planar_urdf(n), source=f"planar_{n}")
    return robot_lib.robot_from_model(
        model, name=f"planar_{n}", root="base", tips=("end_effector",), source=f"planar_{n}"
    )


def load_robot(
    name_or_path: str | os.PathLike,
    *,
    root: str | None = None,
    tips: Sequence[str] | None = None,
    joint_names: Sequence[str] | None = None,
    locked: Mapping[str, float] | None = None,
    end_effector: str | None = None,
    name: str | None = None,
) -> robot_lib.Robot:
    """A robot by registered name, "planar_<n>", or robot file path (URDF, or MJCF ".xml").

    Args:
        name_or_path: one of `available_robots()`, "planar_<n>" (n >= 1), or a URDF file.
        root, tips, joint_names, locked, end_effector: for URDF files only; see
            `tree.build_tree` (root defaults to the URDF root, tips to the leaves below it,
            joint_names to the movable joints on the root -> tip paths, end_effector to tips[0]).
        name: the robot's name (default: the URDF's `<robot name>`).

    Returns:
        A `Robot`. Registered names return the same object on every call.

    Raises:
        UnknownRobotError: neither a registered name nor a path to a URDF file.
        UrdfFileNotFoundError: a URDF path that does not exist.
        KinematicsError subclasses: see `urdf.parse_urdf` and `tree.build_tree`.
    """
    key = os.fspath(name_or_path)
    options = dict(root=root, tips=tips, joint_names=joint_names, locked=locked, name=name)
    is_registered = key in _REGISTRY or _PLANAR.fullmatch(key)
    if is_registered and (any(v is not None for v in options.values()) or end_effector):
        raise errors.KinematicsError(
            f"{key!r} is a registered robot; root/tips/joint_names/locked/end_effector/name only "
            "apply to URDF files (pass the file path, see urdf_path())"
        )
    if key in _REGISTRY:
        return _registered(key)
    match = _PLANAR.fullmatch(key)
    if match and int(match.group(1)) >= 1:
        return _planar(int(match.group(1)))
    if _looks_like_file(key):
        model = load_model(key)
        return robot_lib.robot_from_model(model, end_effector=end_effector, source=key, **options)
    raise _unknown_robot(key)


def load_robot_from_string(
    xml: str,
    *,
    root: str | None = None,
    tips: Sequence[str] | None = None,
    joint_names: Sequence[str] | None = None,
    locked: Mapping[str, float] | None = None,
    end_effector: str | None = None,
    name: str | None = None,
) -> robot_lib.Robot:
    """A robot from URDF XML text (arguments as in `load_robot`)."""
    model = urdf.parse_urdf(xml)
    return robot_lib.robot_from_model(
        model,
        name=name,
        root=root,
        tips=tips,
        joint_names=joint_names,
        locked=locked,
        end_effector=end_effector,
    )
