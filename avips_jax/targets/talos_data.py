"""Valid TALOS whole-body postures: the "pre-generated valid configurations" of the baselines.

Uniform joints are no valid TALOS postures (the feet float, the robot falls), so the GAN's
discriminator and a maximum-likelihood flow need postures made valid first:

    x, ok = valid_postures(target, key, n)          # (n, 34), (n,) bool
    c = target.gripper_position(x)                   # (n, 3): the contexts they reach

Each posture starts from joints uniform in their limits and a base pose uniform in the target's
base box, and takes `steps` Adam steps up `target.log_prob(x, c)` for a context c drawn from
`target.sample_contexts` (limits, centre of mass over the support, both feet at their stances,
left gripper at c), as an IK solver would for random targets. The reached gripper positions,
not the requested c, are the contexts of the pairs, so a pair is exact whether or not c was
reached; aiming at the context prior makes them cover the contexts the models are tested on
(with the gripper term left out, `reach=False`, they cluster 0.6 m higher and further out than
the test contexts: a test context's nearest one is 11 cm away at the median). `ok` marks the
postures that meet `stance_checks`.
"""

import chex
import jax
import jax.numpy as jnp
import optax

from avips_jax.targets import talos as talos_lib

FOOT_TOLERANCE_M = 0.01  # a foot within 1 cm of its stance
FOOT_TILT_TOLERANCE = 0.1  # ||R_foot - I||_F (about 4 degrees)


def stance_checks(target: talos_lib.TalosWholeBody, x: chex.Array) -> chex.Array:
    """(..., 34) -> (...) bool: joints within limits, both feet within FOOT_TOLERANCE_M of their
    stance positions and FOOT_TILT_TOLERANCE of flat, CoM (xy) within com_limit of the support."""
    x = jnp.asarray(x)
    poses = target.world_link_poses(x, (talos_lib.LEFT_SOLE, talos_lib.RIGHT_SOLE))
    ok = jnp.all(
        (target.joints(x) >= target.robot.lower) & (target.joints(x) <= target.robot.upper), -1
    )
    for index, stance in ((0, talos_lib.LEFT_FOOT_POSITION), (1, talos_lib.RIGHT_FOOT_POSITION)):
        pose = poses[..., index, :, :]
        ok &= jnp.linalg.norm(pose[..., :3, 3] - jnp.asarray(stance), axis=-1) < FOOT_TOLERANCE_M
        ok &= jnp.linalg.norm(pose[..., :3, :3] - jnp.eye(3), axis=(-2, -1)) < FOOT_TILT_TOLERANCE
    support = poses[..., 0, :2, 3]
    if target.com_reference == "feet_center":
        support = 0.5 * (support + poses[..., 1, :2, 3])
    com_xy = target.center_of_mass(x)[..., :2]
    return ok & jnp.all(jnp.abs(com_xy - support) <= target.com_limit, -1)


def valid_postures(
    target: talos_lib.TalosWholeBody,
    key: chex.PRNGKey,
    n: int,
    *,
    steps: int = 1000,
    learning_rate: float = 0.02,
    reach: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """n postures optimised for the target (for the stance terms only if not `reach`), and which
    of them pass `stance_checks`.

    Returns:
        x (n, 34) float32 (joints clipped to their limits) and ok (n,) bool.
    """
    if n < 1 or steps < 0:
        raise ValueError(f"valid_postures needs n >= 1 and steps >= 0, got n={n}, steps={steps}")
    x_key, c_key = jax.random.split(key)
    lower = jnp.asarray(target.lower, jnp.float32)
    upper = jnp.asarray(target.upper, jnp.float32)
    x0 = jax.random.uniform(x_key, (n, target.dim), jnp.float32, lower, upper)
    if reach:
        aims = target.sample_contexts(c_key, n)
        return _optimise(target, x0, lambda x: target.log_prob(x, aims), steps, learning_rate)
    return _optimise(target, x0, target.stance_log_prob, steps, learning_rate)


def _optimise(target, x0, log_prob, steps, learning_rate):
    optimiser = optax.adam(learning_rate)
    loss = lambda x: -jnp.sum(log_prob(x))  # noqa: E731
    num_joints = talos_lib.NUM_JOINTS
    lower = jnp.asarray(target.robot.lower, x0.dtype)
    upper = jnp.asarray(target.robot.upper, x0.dtype)

    @jax.jit
    def run(x):
        def step(_, carry):
            x, opt_state = carry
            updates, opt_state = optimiser.update(jax.grad(loss)(x), opt_state)
            x = optax.apply_updates(x, updates)
            x = x.at[:, :num_joints].set(jnp.clip(x[:, :num_joints], lower, upper))
            return x, opt_state

        x, _ = jax.lax.fori_loop(0, steps, step, (x, optimiser.init(x)))
        return x, stance_checks(target, x)

    return run(x0)
