"""The conditional planar n-link IK target: the goal position of the end effector is the context."""

import dataclasses
import math
from typing import ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np

from avips_jax.targets import base

_LOG_2PI = math.log(2.0 * math.pi)


@dataclasses.dataclass(frozen=True)
class PlanarIK(base.Target):
    """Posterior over the joint angles of a planar arm that reaches a goal c (docs/math.md §8.3).

    x = theta in R^n (n = num_links joint angles, radians), c = goal in R^2 (length units).
      log p(theta | c) = log N(theta; 0, diag(s^2)) + log N(FK(theta); c, likelihood_std^2 I_2),
    s_0 = base_std, s_{1..n-1} = joint_std, FK as in `end_effector`. Unnormalised (Z(c) is the
    marginal likelihood of the goal and is not known in closed form); no exact sampler.

    Contexts: c = r (cos a, sin a) with r ~ U(min_radius, max_radius) (uniform in the radius, not
    in area) and a ~ U(min_angle, max_angle); the defaults (r in [5, 9], the full circle) are all
    reachable by 10 unit links (max_radius <= n * link_length is enforced).
    Box: [-pi, pi] for every joint.
    """

    num_links: int = 10
    link_length: float = 1.0
    base_std: float = 1.0
    joint_std: float = 0.2
    likelihood_std: float = 0.01
    min_radius: float = 5.0
    max_radius: float = 9.0
    min_angle: float = -math.pi
    max_angle: float = math.pi

    name: ClassVar[str] = "planar"
    context_dim: ClassVar[int] = 2

    def __post_init__(self):
        if self.num_links < 1 or self.link_length <= 0:
            raise ValueError(f"planar: need num_links >= 1 and link_length > 0, got {self}")
        if min(self.base_std, self.joint_std, self.likelihood_std) <= 0:
            raise ValueError(f"planar: standard deviations must be > 0, got {self}")
        reach = self.num_links * self.link_length
        if not 0 <= self.min_radius <= self.max_radius <= reach:
            raise ValueError(
                f"planar: need 0 <= min_radius <= max_radius <= reach = {reach}, got "
                f"[{self.min_radius}, {self.max_radius}]"
            )
        if self.min_angle > self.max_angle:
            raise ValueError(f"planar: min_angle > max_angle in {self}")

    @property
    def dim(self) -> int:
        return self.num_links

    @property
    def lower(self) -> np.ndarray:
        return np.full(self.num_links, -np.pi)

    @property
    def upper(self) -> np.ndarray:
        return np.full(self.num_links, np.pi)

    @property
    def prior_stds(self) -> np.ndarray:
        """Prior standard deviations s, shape (n,)."""
        stds = np.full(self.num_links, self.joint_std)
        stds[0] = self.base_std
        return stds

    def link_positions(self, theta: chex.Array) -> chex.Array:
        """Positions of the base, every joint and the end effector: (..., n) -> (..., n + 1, 2)."""
        theta = jnp.asarray(theta)
        base.check_trailing(theta, self.num_links, "theta", self.name)
        angles = jnp.cumsum(theta, axis=-1)
        steps = self.link_length * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)
        origin = jnp.zeros(theta.shape[:-1] + (1, 2), steps.dtype)
        return jnp.concatenate([origin, jnp.cumsum(steps, axis=-2)], axis=-2)

    def end_effector(self, theta: chex.Array) -> chex.Array:
        """Forward kinematics p(theta) = l (sum_i cos(phi_i), sum_i sin(phi_i)), phi_i = sum_{j<=i}
        theta_j: (..., n) -> (..., 2)."""
        theta = jnp.asarray(theta)
        base.check_trailing(theta, self.num_links, "theta", self.name)
        angles = jnp.cumsum(theta, axis=-1)
        return self.link_length * jnp.stack(
            [jnp.sum(jnp.cos(angles), axis=-1), jnp.sum(jnp.sin(angles), axis=-1)], axis=-1
        )

    def _log_prob_single(self, x, c):
        stds = jnp.asarray(self.prior_stds, x.dtype)
        log_prior = (
            jnp.sum(-0.5 * (x / stds) ** 2 - jnp.log(stds)) - 0.5 * self.num_links * _LOG_2PI
        )
        err = self.end_effector(x) - c
        sig = self.likelihood_std
        log_lik = -0.5 * jnp.sum(err**2) / sig**2 - 2 * math.log(sig) - _LOG_2PI
        return log_prior + log_lik

    def sample_contexts(self, key: chex.PRNGKey, n: int) -> chex.Array:
        """Reachable goals c = r (cos a, sin a): -> (n, 2) float32."""
        key_r, key_a = jax.random.split(key)
        r = jax.random.uniform(key_r, (n,), jnp.float32, self.min_radius, self.max_radius)
        a = jax.random.uniform(key_a, (n,), jnp.float32, self.min_angle, self.max_angle)
        return r[:, None] * jnp.stack([jnp.cos(a), jnp.sin(a)], axis=-1)
