"""Forward kinematics in JAX on a static `KinematicTree`, written for speed.

Every pose is carried as 12 scalar entries (rotation 3x3, translation 3), each either a Python
float (known at trace time) or an array of the batch shape. Products and sums with constant
0, 1 or -1 are simplified while tracing, so the folded fixed transforms, rpy origins of multiples
of pi/2 and coordinate-axis joints cost no flops: a Panda joint is ~20 multiply-adds plus one
sin/cos. The loop over bodies is unrolled at trace time (structure-of-arrays: no 4x4 matmuls,
no gathers) and XLA fuses it into elementwise loops over the batch. XLA recomputes the shared
chain inside each output entry's loop; that is cheap because sin/cos is a short polynomial
(`trig.sincos`; XLA:CPU's own sin/cos made it 5-10x slower). Panda-hand FK: ~2.7e7 configs/s on
one CPU core in float32 (see the package docstring).
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from avips_jax.kinematics import tree as tree_lib
from avips_jax.kinematics import trig as trig_lib

Entry = float | jax.Array
# rotation rows (3 x 3 entries) and translation (3 entries)
Pose = tuple[tuple[tuple[Entry, Entry, Entry], ...], tuple[Entry, Entry, Entry]]

_SNAP = 1e-14  # constants this close to 0 or +-1 are taken as exact (cos(pi/2) = 6e-17)


def _snap(x: float) -> float:
    for target in (0.0, 1.0, -1.0):
        if abs(x - target) < _SNAP:
            return target
    return float(x)


def _mul(a: Entry, b: Entry) -> Entry:
    if isinstance(b, float):
        a, b = b, a
    if isinstance(a, float):
        if isinstance(b, float):
            return a * b
        if a == 0.0:
            return 0.0
        if a == 1.0:
            return b
        if a == -1.0:
            return -b
    return a * b


def _add(a: Entry, b: Entry) -> Entry:
    if isinstance(a, float) and a == 0.0:
        return b
    if isinstance(b, float) and b == 0.0:
        return a
    return a + b


def _dot(row: Sequence[Entry], col: Sequence[Entry]) -> Entry:
    out: Entry = 0.0
    for a, b in zip(row, col, strict=True):
        out = _add(out, _mul(a, b))
    return out


def const_pose(transform: np.ndarray) -> Pose:
    """A (4, 4) numpy transform as a `Pose` of (snapped) Python floats."""
    rot = tuple(tuple(_snap(transform[i, j]) for j in range(3)) for i in range(3))
    return rot, tuple(_snap(transform[i, 3]) for i in range(3))


def compose(a: Pose, b: Pose) -> Pose:
    """a · b for poses (R_a R_b, R_a p_b + p_a)."""
    (ra, pa), (rb, pb) = a, b
    cols = tuple(tuple(rb[k][j] for k in range(3)) for j in range(3))
    rot = tuple(tuple(_dot(ra[i], cols[j]) for j in range(3)) for i in range(3))
    pos = tuple(_add(_dot(ra[i], pb), pa[i]) for i in range(3))
    return rot, pos


def rotate(pose: Pose, vec: Sequence[Entry]) -> tuple[Entry, Entry, Entry]:
    """R · vec + p: a point given in the pose's frame, expressed in the outer frame."""
    rot, pos = pose
    return tuple(_add(_dot(rot[i], vec), pos[i]) for i in range(3))


def _axis_rotation(axis: np.ndarray, cos: jax.Array, sin: jax.Array) -> Pose:
    """Rot(axis, q) = cos·(I − a aᵀ) + sin·[a]× + a aᵀ (Rodrigues) as a `Pose`."""
    a = [_snap(v) for v in axis]
    cross = ((0.0, -a[2], a[1]), (a[2], 0.0, -a[0]), (-a[1], a[0], 0.0))
    rot = tuple(
        tuple(
            _add(
                _add(_mul(_snap((i == j) - a[i] * a[j]), cos), _mul(cross[i][j], sin)),
                _snap(a[i] * a[j]),
            )
            for j in range(3)
        )
        for i in range(3)
    )
    return rot, (0.0, 0.0, 0.0)


def _joint_values(q: jax.Array, bodies: Sequence[tree_lib.Body]) -> dict:
    """(dof, multiplier, bias, kind) -> (cos, sin) of q_eff for revolute bodies, q_eff for
    prismatic ones; computed once per distinct key (mimic joints with equal q_eff share it)."""
    values = {}
    for body in bodies:
        key = (body.dof, body.multiplier, body.bias, body.kind)
        if key not in values:
            q_eff = _add(_mul(body.multiplier, q[..., body.dof]), body.bias)
            if body.kind == "revolute":
                sin, cos = trig_lib.sincos(q_eff)
                q_eff = (cos, sin)
            values[key] = q_eff
    return values


def _body_motion(body: tree_lib.Body, values: dict) -> Pose:
    """Motion(q_eff) of a body's joint: Rot(axis, q_eff), or a translation along the axis."""
    value = values[(body.dof, body.multiplier, body.bias, body.kind)]
    if body.kind == "prismatic":
        eye = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
        return eye, tuple(_mul(_snap(v), value) for v in body.axis)
    return _axis_rotation(body.axis, *value)


def body_poses(tree: tree_lib.KinematicTree, q: jax.Array, needed: Sequence[int]) -> dict:
    """Poses (in the root frame) of the bodies in `needed` and all their ancestors.

    Args:
        tree: the static kinematic tree.
        q: (..., dof) joint values.
        needed: body indices.

    Returns:
        dict body index -> `Pose`; index `tree_lib.ROOT` is the identity.
    """
    wanted = set()
    for index in needed:
        while index != tree_lib.ROOT and index not in wanted:
            wanted.add(index)
            index = tree.bodies[index].parent
    order = [i for i in range(len(tree.bodies)) if i in wanted]
    values = _joint_values(q, [tree.bodies[i] for i in order])
    poses = {tree_lib.ROOT: const_pose(np.eye(4))}
    for index in order:
        body = tree.bodies[index]
        joint_frame = compose(poses[body.parent], const_pose(body.offset))
        poses[index] = compose(joint_frame, _body_motion(body, values))
    return poses


def _flat_entries(pose: Pose) -> list[Entry]:
    """The 16 entries of the 4x4 matrix of a pose, row-major."""
    rot, pos = pose
    return [*rot[0], pos[0], *rot[1], pos[1], *rot[2], pos[2], 0.0, 0.0, 0.0, 1.0]


def link_poses_fn(tree: tree_lib.KinematicTree, q: jax.Array, links: tuple[str, ...]) -> jax.Array:
    """Poses of `links` in the root frame; q (..., dof) float -> (..., len(links), 4, 4).

    No input checks (the caller validated `links` and the shape of q).
    """
    frames = [tree.link_frames[link] for link in links]
    poses = body_poses(tree, q, [anchor for anchor, _ in frames])
    batch_shape = q.shape[:-1]
    entries = [
        jnp.broadcast_to(jnp.asarray(entry, q.dtype), batch_shape)
        for anchor, const in frames
        for entry in _flat_entries(compose(poses[anchor], const_pose(const)))
    ]
    # One stack of all entries: XLA emits a single output loop (per-link stacks were ~2x slower).
    return jnp.stack(entries, axis=-1).reshape(batch_shape + (len(links), 4, 4))


@functools.partial(jax.jit, static_argnums=(0, 2))
def link_poses_jit(tree: tree_lib.KinematicTree, q: jax.Array, links: tuple[str, ...]):
    """`link_poses_fn` compiled once per (tree, links, q shape/dtype); inlined under an outer jit.

    Eager callers otherwise dispatch hundreds of tiny ops one by one.
    """
    return link_poses_fn(tree, q, links)


def center_of_mass_fn(tree: tree_lib.KinematicTree, q: jax.Array, include_root: bool = True):
    """Centre of mass (..., 3) in the root frame (m) of the `<inertial>` masses of all links.

    Args:
        tree: the kinematic tree (its included mass must be > 0).
        q: (..., dof) joint values.
        include_root: also count the links rigidly attached to the root (the root link itself,
            links behind fixed or held joints). False reproduces pinocchio's fixed-base
            `centerOfMass`, which leaves out the mass attached to its `universe` joint.
    """
    mass = np.array(tree.anchor_mass)
    if not include_root:
        mass[0] = 0.0
    anchors = [int(i) - 1 for i in np.flatnonzero(mass)]
    poses = body_poses(tree, q, [a for a in anchors if a != tree_lib.ROOT])
    total = float(np.sum(mass))
    com: list[Entry] = [0.0, 0.0, 0.0]
    for anchor in anchors:
        weight = float(mass[anchor + 1]) / total
        local = [float(v) for v in tree.anchor_com[anchor + 1]]
        point = rotate(poses[anchor], local)
        com = [_add(c, _mul(weight, p)) for c, p in zip(com, point, strict=True)]
    batch_shape = q.shape[:-1]
    return jnp.stack([jnp.broadcast_to(jnp.asarray(c, q.dtype), batch_shape) for c in com], -1)


center_of_mass_jit = jax.jit(center_of_mass_fn, static_argnums=(0, 2))
