"""Input checks shared by the kinematics functions."""

from collections.abc import Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from avips_jax.kinematics import errors


def is_concrete(x) -> bool:
    """True when `x` holds values now (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def check_finite(x: chex.Array, name: str = "q") -> None:
    """Raises `NonFiniteError` if a concrete array holds NaN or inf.

    Under `jit`, `vmap` or `grad` the values are unknown at trace time, so nothing is checked
    there; call this on the concrete input before entering the transformation instead.

    Args:
        x: a concrete array (a tracer is ignored).
        name: the argument name used in the message.
    """
    if not is_concrete(x):
        return
    values = np.asarray(x)
    if values.dtype.kind in "fc" and not np.all(np.isfinite(values)):
        bad = np.argwhere(~np.isfinite(values))
        raise errors.NonFiniteError(
            f"{name} holds {len(bad)} non-finite value(s) (NaN or inf), first at index "
            f"{tuple(int(i) for i in bad[0])}"
        )


def prepare_q(q: chex.Array, dof: int, robot: str, check: bool = True) -> jax.Array:
    """Validates q (..., dof) and returns it as a floating JAX array (integers -> default float).

    Raises:
        ShapeError: q is a scalar or its last axis is not `dof`.
        NonFiniteError: q is concrete, `check` is set and q holds NaN or inf.
    """
    if check:
        check_finite(q)
    q = jnp.asarray(q)
    if not jnp.issubdtype(q.dtype, jnp.floating):
        q = q.astype(jnp.result_type(float))
    if q.ndim == 0 or q.shape[-1] != dof:
        raise errors.ShapeError(
            f"q has shape {q.shape}; robot {robot!r} needs (..., {dof}) (last axis = dof)"
        )
    return q


def check_links(links: Sequence[str], known, robot: str) -> tuple[str, ...]:
    """Returns `links` as a tuple after checking each name is a link of the robot's model."""
    if isinstance(links, str):
        raise errors.KinematicsError(
            f"links must be a sequence of link names, got the string {links!r}; use [{links!r}]"
        )
    links = tuple(links)
    for link in links:
        if link not in known:
            raise errors.UnknownLinkError(
                f"unknown link {link!r} for robot {robot!r} (links: {', '.join(known)})"
            )
    return links
