"""Floating-base pose from a position and roll-pitch-yaw, and its composition with link poses."""

import chex
import jax
import jax.numpy as jnp

from avips_jax.kinematics import errors


def floating_base_pose(base_xyz: chex.Array, base_rpy: chex.Array) -> jax.Array:
    """The base pose [R | p] with R = Rz(yaw) · Ry(pitch) · Rx(roll) (the URDF rpy convention).

    Args:
        base_xyz: (..., 3) base position (m).
        base_rpy: (..., 3) (roll, pitch, yaw) in rad; leading axes broadcast against base_xyz.

    Returns:
        (..., 4, 4) homogeneous transform of the base in the world frame (the dtype of the inputs).

    Raises:
        ShapeError: a last axis that is not 3.
    """
    base_xyz, base_rpy = jnp.asarray(base_xyz), jnp.asarray(base_rpy)
    for name, x in (("base_xyz", base_xyz), ("base_rpy", base_rpy)):
        if x.ndim == 0 or x.shape[-1] != 3:
            raise errors.ShapeError(f"{name} has shape {x.shape}; expected (..., 3)")
    dtype = jnp.result_type(base_xyz, base_rpy, float)
    batch = jnp.broadcast_shapes(base_xyz.shape[:-1], base_rpy.shape[:-1])
    p = jnp.broadcast_to(base_xyz.astype(dtype), batch + (3,))
    cr, cp, cy = (jnp.cos(base_rpy[..., i].astype(dtype)) for i in range(3))
    sr, sp, sy = (jnp.sin(base_rpy[..., i].astype(dtype)) for i in range(3))
    zero, one = jnp.zeros_like(cr), jnp.ones_like(cr)
    rows = [
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr, p[..., 0]],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr, p[..., 1]],
        [-sp, cp * sr, cp * cr, p[..., 2]],
        [zero, zero, zero, one],
    ]
    rows = [[jnp.broadcast_to(e, batch) for e in row] for row in rows]
    return jnp.stack([jnp.stack(row, axis=-1) for row in rows], axis=-2)


def world_poses(base_pose: chex.Array, poses: chex.Array) -> jax.Array:
    """World poses of links: base_pose · T_link for each link.

    Args:
        base_pose: (..., 4, 4) from `floating_base_pose`.
        poses: (..., n_links, 4, 4) from `Robot.link_poses` (poses in the root frame).

    Returns:
        (..., n_links, 4, 4). For a single pose (..., 4, 4) use `base_pose @ pose`.
    """
    base_pose, poses = jnp.asarray(base_pose), jnp.asarray(poses)
    if base_pose.shape[-2:] != (4, 4) or poses.ndim < 3 or poses.shape[-2:] != (4, 4):
        raise errors.ShapeError(
            f"world_poses needs base_pose (..., 4, 4) and poses (..., n, 4, 4); got "
            f"{base_pose.shape} and {poses.shape}"
        )
    # HIGHEST: GPUs would otherwise multiply float32 in TF32 (1e-3 relative error).
    return jnp.matmul(base_pose[..., None, :, :], poses, precision=jax.lax.Precision.HIGHEST)
