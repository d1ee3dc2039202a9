"""Valid (context, configuration) pairs: the data of the baselines that learn from examples.

The GAN's discriminator ("gan") and the maximum-likelihood flow ("flow") learn from pairs
(c, q) where q is a valid configuration and c the context it reaches:

    contexts, q = valid_pairs(target, key, num)     # (num, d_c), (num, d) float32

  * IK targets (with `contexts_from_joints`): q uniform in the joint limits (`ik.sampling_box`:
    ranges wider than 2 pi become [-pi, pi], the IKFlow protocol), c = contexts_from_joints(q).
  * TALOS, whose uniform postures do not stand (the feet float, the robot falls): postures
    optimised to stand and reach contexts from the test prior (`talos_data.valid_postures`;
    only those that pass its checks, repeated cyclically up to `num`) and c = their gripper
    positions. Each takes 1000 Adam steps, so the trainers make them once, at their first step.
"""

import functools
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np

from avips_jax.targets import base as target_base
from avips_jax.targets import ik, talos_data
from avips_jax.targets.talos import TalosWholeBody

__all__ = ["has_valid_pairs", "lazy_valid_pairs", "require_valid_pairs", "valid_pairs"]


def has_valid_pairs(target: target_base.Target) -> bool:
    """Whether `valid_pairs` can make pairs for `target` (an IK target or TALOS)."""
    return isinstance(target, TalosWholeBody) or target.has_joint_contexts


def require_valid_pairs(target: target_base.Target, method: str, alternative: str) -> None:
    """ValueError naming `method` and `alternative` unless `target` has valid pairs."""
    if not has_valid_pairs(target):
        raise ValueError(
            f"method {method!r} learns from valid (context, configuration) pairs, which need an "
            f"IK target with contexts_from_joints (or TALOS); target "
            f"{target.name!r} has none: use method {alternative!r}"
        )


def valid_pairs(
    target: target_base.Target, key: chex.PRNGKey, num: int
) -> tuple[jax.Array, jax.Array]:
    """`num` valid pairs for `target` (see the module docstring for how they are made).

    Returns:
        contexts (num, d_c), q (num, d), float32.

    Raises:
        ValueError: `num` < 1, a target without valid pairs, or no TALOS posture that stands.
    """
    num = int(num)
    if num < 1:
        raise ValueError(f"valid_pairs needs num >= 1, got {num}")
    if isinstance(target, TalosWholeBody):
        return _talos_valid_pairs(target, key, num)
    require_valid_pairs(target, "valid_pairs", "a reverse-KL or NLL-only method")
    q = target_base.uniform_box(key, num, *ik.sampling_box(target.robot))
    return jnp.asarray(target.contexts_from_joints(q), jnp.float32), q


def lazy_valid_pairs(
    target: target_base.Target, seed: int, num: int
) -> Callable[[], tuple[jax.Array, jax.Array]]:
    """`valid_pairs(target, key, num)` made at the first call and cached, key fixed by `seed`:
    a resumed run sees the same data, and loading a trained model (no train step) never makes
    them (TALOS postures take minutes)."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 7)
    return functools.cache(lambda: valid_pairs(target, key, num))


def _talos_valid_pairs(target, key, num):
    x, ok = talos_data.valid_postures(target, key, num + num // 2)  # ~70% pass: cover num
    x = np.asarray(x)[np.asarray(ok)]
    if x.shape[0] == 0:
        raise ValueError("valid_pairs: no TALOS posture passed the stance checks; raise steps")
    x = jnp.asarray(x[np.arange(num) % x.shape[0]], jnp.float32)
    return jnp.asarray(target.gripper_position(x), jnp.float32), x
