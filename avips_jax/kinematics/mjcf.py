"""Reads the kinematic tree of an MJCF (MuJoCo XML) robot into the same `urdf.UrdfModel` that a
URDF gives, so that every later stage (`tree`, `fk`, `Robot`, IK targets) is shared.

MuJoCo's own parser and compiler (the `mujoco` package; `pip install avips_jax[mjcf]` installs
`mujoco-core`, whose only dependency is numpy) resolve everything MJCF allows: defaults classes,
`<include>`, `compiler angle="degree"`, euler / axisangle / xyaxes / zaxis orientations, joint
positions inside a body. Bodies become links of the same name, joints keep their names:

    body b with parent p, frame F_b = F_p · T(pos, quat), and joints j_1..j_n (hinge or slide,
    anchor a_i and axis k_i in b's frame) moves as
        F_b(q) = F_p · T(pos, quat) · Π_i [Trans(a_i) · Motion(k_i, q_i) · Trans(-a_i)],
    written as URDF joints p -(j_1)-> b/j_1 -(j_2)-> ... -(fixed)-> b with origins
    T(pos, quat)·Trans(a_1), Trans(a_2 - a_1), ..., Trans(-a_n) (the intermediate links
    "b/j_i" exist only for bodies with several joints or an anchor off the body origin).

Hinges with a range become revolute joints, without one continuous; slides need a range
(prismatic). Ball and free joints become "floating" joints: allowed above the chosen root (a
humanoid's free-floating pelvis), refused on the chain (`tree.build_tree`). Masses and centres of
mass are MuJoCo's (from geoms where the file gives no inertial). Files whose meshes are missing
still load: mesh geoms are dropped before compiling (kinematics never needs them) and the links
then carry no masses. Equality constraints and tendons (coupled joints) are ignored.
"""

import os
import pathlib

import numpy as np

from avips_jax.kinematics import errors, urdf

__all__ = ["load_mjcf", "parse_mjcf"]


def _mujoco():
    try:
        import mujoco
    except ImportError as err:
        raise errors.KinematicsError(
            "MJCF robot files need the mujoco package: pip install 'avips_jax[mjcf]' (or "
            "mujoco-core)"
        ) from err
    return mujoco


def load_mjcf(path: str | os.PathLike) -> urdf.UrdfModel:
    """The kinematic tree of the MJCF file at `path`.

    Raises:
        UrdfFileNotFoundError: no such file.
        MalformedUrdfError: MuJoCo cannot parse or compile the file (its message is kept).
        InvalidUrdfError: a slide joint without a range.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise errors.UrdfFileNotFoundError(f"MJCF file not found: {str(path)!r}")
    mujoco = _mujoco()
    try:
        spec = mujoco.MjSpec.from_file(str(path))
    except Exception as err:  # mujoco raises ValueError with the parser's message
        raise errors.MalformedUrdfError(f"MJCF file {path}: {err}") from err
    return _from_spec(spec, str(path))


def parse_mjcf(text: str, source: str = "<string>") -> urdf.UrdfModel:
    """The kinematic tree of MJCF XML text (as `load_mjcf`; mesh paths cannot be resolved, so
    mesh geoms are dropped)."""
    mujoco = _mujoco()
    try:
        spec = mujoco.MjSpec.from_string(text)
    except Exception as err:
        raise errors.MalformedUrdfError(f"MJCF {source}: {err}") from err
    return _from_spec(spec, source)


def _from_spec(spec, source: str) -> urdf.UrdfModel:
    spec.compiler.fusestatic = False  # every body stays a link of its own name
    try:
        model, has_masses = spec.compile(), True
    except Exception:
        model, has_masses = _compile_without_meshes(spec, source), False
    return _to_model(model, source, has_masses)


def _compile_without_meshes(spec, source: str):
    """Compiles `spec` with its mesh geoms and meshes removed (a file whose mesh files are not
    there); bodies left without mass get MuJoCo's lower bounds."""
    for geom in list(spec.geoms):
        if geom.meshname:
            spec.delete(geom)
    for mesh in list(spec.meshes):
        spec.delete(mesh)
    spec.compiler.boundmass = 1e-6
    spec.compiler.boundinertia = 1e-9
    try:
        return spec.compile()
    except Exception as err:
        raise errors.MalformedUrdfError(f"MJCF {source}: MuJoCo cannot compile it: {err}") from err


def _quat_matrix(q: np.ndarray) -> np.ndarray:
    """(3, 3) rotation of a unit quaternion (w, x, y, z)."""
    w, x, y, z = (float(v) for v in q / np.linalg.norm(q))
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _transform(rotation: np.ndarray | None = None, translation=(0.0, 0.0, 0.0)) -> np.ndarray:
    t = np.eye(4)
    if rotation is not None:
        t[:3, :3] = rotation
    t[:3, 3] = translation
    return t


def _names(model, kind: str, count: int, prefix: str) -> list[str]:
    """Element names, unnamed ones as f"{prefix}{index}"."""
    return [getattr(model, kind)(i).name or f"{prefix}{i}" for i in range(count)]


def _to_model(model, source: str, has_masses: bool) -> urdf.UrdfModel:
    mujoco = _mujoco()
    hinge, slide = mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE
    bodies = _names(model, "body", model.nbody, "body")
    joint_names = _names(model, "joint", model.njnt, "joint")
    links: dict[str, urdf.Inertial | None] = {}
    joints: dict[str, urdf.Joint] = {}
    for b, name in enumerate(bodies):
        mass = float(model.body_mass[b])
        links[name] = (
            urdf.Inertial(mass, np.array(model.body_ipos[b], np.float64))
            if has_masses and mass > 0
            else None
        )
    for b in range(1, model.nbody):
        parent = bodies[int(model.body_parentid[b])]
        placement = _transform(_quat_matrix(model.body_quat[b]), model.body_pos[b])
        start = int(model.body_jntadr[b])  # a body's joints are contiguous (-1: none)
        own = range(start, start + int(model.body_jntnum[b])) if start >= 0 else range(0)
        previous_anchor = np.zeros(3)
        for i, j in enumerate(own):
            anchor = np.array(model.jnt_pos[j], np.float64)
            last = i == len(own) - 1
            child = bodies[b] if last and not np.any(anchor) else f"{bodies[b]}/{joint_names[j]}"
            origin = (
                placement @ _transform(translation=anchor)
                if i == 0
                else _transform(translation=anchor - previous_anchor)
            )
            joints[joint_names[j]] = _joint(
                model, j, joint_names[j], parent, child, origin, hinge, slide, source
            )
            if child != bodies[b]:
                links[child] = None
            parent, previous_anchor = child, anchor
        if not own or parent != bodies[b]:
            origin = placement if not own else _transform(translation=-previous_anchor)
            joints[f"{bodies[b]}/fixed"] = urdf.Joint(
                name=f"{bodies[b]}/fixed",
                type="fixed",
                parent=parent,
                child=bodies[b],
                origin=origin,
                axis=np.array([1.0, 0.0, 0.0]),
                lower=0.0,
                upper=0.0,
            )
    name = model.names[: model.names.find(b"\0")].decode() if model.names else ""
    return urdf.UrdfModel(name=name or pathlib.Path(source).stem, links=links, joints=joints)


def _joint(model, j, name, parent, child, origin, hinge, slide, source) -> urdf.Joint:
    kind = model.jnt_type[j]
    limited = bool(model.jnt_limited[j])
    lower, upper = (float(v) for v in model.jnt_range[j])
    if kind == hinge:
        joint_type = "revolute" if limited else "continuous"
        if not limited:
            lower, upper = -np.pi, np.pi
    elif kind == slide:
        if not limited:
            raise errors.InvalidUrdfError(
                f"MJCF {source}: slide joint {name!r} has no range; give it one (range=...) or "
                "lock it"
            )
        joint_type = "prismatic"
    else:  # ball, free: not a dof this library drives
        joint_type, lower, upper = "floating", 0.0, 0.0
    return urdf.Joint(
        name=name,
        type=joint_type,
        parent=parent,
        child=child,
        origin=origin,
        axis=np.array(model.jnt_axis[j], np.float64),
        lower=lower,
        upper=upper,
    )
