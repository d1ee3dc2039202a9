"""Rotation helpers: unit quaternions (w, x, y, z) <-> matrices, log map, geodesic angle.

Conventions: a quaternion is (w, x, y, z) with w >= 0 (q and -q are the same rotation; every
function here returns the w >= 0 representative, and where w = 0 the first nonzero of (x, y, z)
positive); matrices act on column vectors (v_world = R v_body). All functions are batched over
leading axes, jit/vmap/grad-friendly and follow the input's floating dtype.
"""

import chex
import jax
import jax.numpy as jnp


def _check_last(a: chex.Array, shape: tuple[int, ...], name: str) -> jax.Array:
    a = jnp.asarray(a)
    if a.ndim < len(shape) or a.shape[a.ndim - len(shape) :] != shape:
        raise ValueError(
            f"{name} must have shape (..., {', '.join(map(str, shape))}), got {a.shape}"
        )
    return a.astype(jnp.promote_types(a.dtype, jnp.float32))


def canonical_quaternion(quat: chex.Array) -> jax.Array:
    """The representative of ±quat with w > 0 (ties at w = 0: first nonzero of x, y, z > 0).

    Args:
        quat: (..., 4) quaternions (w, x, y, z), not necessarily unit.

    Returns:
        (..., 4) the same rotation with the sign convention applied (not normalised).
    """
    quat = _check_last(quat, (4,), "quat")
    sign = jnp.zeros(quat.shape[:-1], quat.dtype)
    for i in range(4):  # the first nonzero entry decides (w first)
        sign = jnp.where(sign == 0, jnp.sign(quat[..., i]), sign)
    return quat * jnp.where(sign == 0, 1.0, sign)[..., None]


def quaternion_to_matrix(quat: chex.Array) -> jax.Array:
    """Rotation matrices of quaternions (w, x, y, z); the input is normalised first.

    Args:
        quat: (..., 4), nonzero.

    Returns:
        (..., 3, 3) rotation matrices.
    """
    quat = _check_last(quat, (4,), "quat")
    w, x, y, z = jnp.moveaxis(quat / jnp.linalg.norm(quat, axis=-1, keepdims=True), -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return jnp.stack([jnp.stack(row, axis=-1) for row in rows], axis=-2)


def matrix_to_quaternion(rot: chex.Array) -> jax.Array:
    """Unit quaternions (w, x, y, z), w >= 0, of rotation matrices (Shepperd's method).

    Each of the four candidate formulas divides by the square root of its own large diagonal
    combination; the one with the largest is taken, so no branch loses precision.

    Args:
        rot: (..., 3, 3) rotation matrices.

    Returns:
        (..., 4) unit quaternions with the sign convention of `canonical_quaternion`.
    """
    rot = _check_last(rot, (3, 3), "rot")
    m = [[rot[..., i, j] for j in range(3)] for i in range(3)]
    trace = m[0][0] + m[1][1] + m[2][2]
    # Candidate i uses 4 q_i^2 = 1 + (trace or a signed diagonal combination).
    big = jnp.stack(
        [
            trace,
            m[0][0] - m[1][1] - m[2][2],
            m[1][1] - m[0][0] - m[2][2],
            m[2][2] - m[0][0] - m[1][1],
        ],
        axis=-1,
    )
    cands = jnp.stack(
        [
            jnp.stack(
                [1 + big[..., 0], m[2][1] - m[1][2], m[0][2] - m[2][0], m[1][0] - m[0][1]], -1
            ),
            jnp.stack(
                [m[2][1] - m[1][2], 1 + big[..., 1], m[0][1] + m[1][0], m[0][2] + m[2][0]], -1
            ),
            jnp.stack(
                [m[0][2] - m[2][0], m[0][1] + m[1][0], 1 + big[..., 2], m[1][2] + m[2][1]], -1
            ),
            jnp.stack(
                [m[1][0] - m[0][1], m[0][2] + m[2][0], m[1][2] + m[2][1], 1 + big[..., 3]], -1
            ),
        ],
        axis=-2,
    )  # (..., 4 candidates, 4)
    best = jnp.argmax(big, axis=-1)
    quat = jnp.take_along_axis(cands, best[..., None, None], axis=-2)[..., 0, :]
    quat = quat / jnp.linalg.norm(quat, axis=-1, keepdims=True)
    return canonical_quaternion(quat)


def rotation_vector(rot: chex.Array) -> jax.Array:
    """The log map: axis * angle (rad, angle in [0, pi]) of rotation matrices, stable everywhere.

    Computed from the w >= 0 quaternion as 2 atan2(|v|, w) v / |v|; near the identity the factor
    tends to 2 / w without a 0/0.

    Args:
        rot: (..., 3, 3).

    Returns:
        (..., 3) rotation vectors r with rot = exp([r]x).
    """
    quat = matrix_to_quaternion(rot)
    w, v = quat[..., 0], quat[..., 1:]
    sq = jnp.sum(v * v, axis=-1)
    tiny = sq < 1e-24
    norm = jnp.sqrt(jnp.where(tiny, 1.0, sq))
    factor = jnp.where(tiny, 2.0 / w, 2.0 * jnp.arctan2(norm, w) / norm)
    return factor[..., None] * v


def geodesic_angle(rot_a: chex.Array, rot_b: chex.Array) -> jax.Array:
    """The angle (rad, in [0, pi]) of the rotation rot_aᵀ rot_b, accurate near 0 and near pi.

    atan2(sin, cos) with sin = |vee(S - Sᵀ)| / 2 and cos = (tr S - 1) / 2 for S = rot_aᵀ rot_b:
    arccos((tr S - 1) / 2) alone loses half the digits near 0.

    Args:
        rot_a, rot_b: (..., 3, 3) rotation matrices; leading axes broadcast.

    Returns:
        (...) angles in radians.
    """
    rot_a, rot_b = _check_last(rot_a, (3, 3), "rot_a"), _check_last(rot_b, (3, 3), "rot_b")
    rel = jnp.einsum(
        "...ji,...jk->...ik", rot_a, rot_b, precision=jax.lax.Precision.HIGHEST
    )  # rot_aᵀ rot_b
    skew = jnp.stack(
        [
            rel[..., 2, 1] - rel[..., 1, 2],
            rel[..., 0, 2] - rel[..., 2, 0],
            rel[..., 1, 0] - rel[..., 0, 1],
        ],
        axis=-1,
    )
    sq = jnp.sum(skew * skew, axis=-1)
    sin = 0.5 * jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)  # NaN-free gradient
    cos = 0.5 * (jnp.trace(rel, axis1=-2, axis2=-1) - 1.0)
    return jnp.arctan2(sin, cos)
