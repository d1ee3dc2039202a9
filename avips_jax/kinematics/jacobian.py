"""Jacobians of link poses by forward-mode autodiff (`jax.jacfwd`) of the FK."""

import functools

import jax
import jax.numpy as jnp

from avips_jax.kinematics import fk
from avips_jax.kinematics import tree as tree_lib


def _single_jacobian(tree: tree_lib.KinematicTree, q: jax.Array, link: str, orientation: bool):
    """(6 or 3, dof) Jacobian of one configuration q (dof,)."""

    def pose(qi):
        transform = fk.link_poses_fn(tree, qi, (link,))[0]
        return transform, transform

    d_pose, transform = jax.jacfwd(pose, has_aux=True)(q)  # (4, 4, dof), (4, 4)
    linear = d_pose[:3, 3, :]
    if not orientation:
        return linear
    # Angular velocity: omega_i = vee(dR/dq_i · Rᵀ); the product is skew, average its halves.
    w = jnp.einsum(
        "abi,cb->aci", d_pose[:3, :3, :], transform[:3, :3], precision=jax.lax.Precision.HIGHEST
    )
    angular = 0.5 * jnp.stack([w[2, 1] - w[1, 2], w[0, 2] - w[2, 0], w[1, 0] - w[0, 1]])
    return jnp.concatenate([linear, angular], axis=0)


def jacobian_fn(tree: tree_lib.KinematicTree, q: jax.Array, link: str, orientation: bool):
    """Geometric Jacobian of `link`, batched over the leading axes of q.

    Args:
        tree: the kinematic tree.
        q: (..., dof) joint values (validated by the caller).
        link: a link of the model.
        orientation: also return the angular rows.

    Returns:
        (..., 6, dof) (rows: d position (m) then angular velocity (rad), both in the root frame,
        i.e. pinocchio's LOCAL_WORLD_ALIGNED convention) or (..., 3, dof) without orientation.
    """
    flat = q.reshape((-1, q.shape[-1]))
    jac = jax.vmap(lambda qi: _single_jacobian(tree, qi, link, orientation))(flat)
    return jac.reshape(q.shape[:-1] + jac.shape[1:])


jacobian_jit = functools.partial(jax.jit, static_argnums=(0, 2, 3))(jacobian_fn)
