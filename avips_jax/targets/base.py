"""The interface every conditional target density log p(x | c) follows."""

import abc
from typing import ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np


class WorkspaceError(ValueError):
    """A context (e.g. an IK target position) that lies outside the target's workspace."""


class Target(abc.ABC):
    """A conditional, possibly unnormalised, log-density log p(x | c).

    Concrete targets are frozen dataclasses whose fields are Python scalars or tuples, so they are
    immutable and hashable: close over them in `jax.jit` or pass them as static arguments.

    Every target provides:
      * `name` (class attribute), `dim` (d of x) and `context_dim` (d_c of c);
      * `lower`, `upper`: numpy float arrays of shape (d,), a box that covers the target's mass and
        is meant for scaling network outputs;
      * `log_prob(x, c)` and `sample_contexts(key, n)`.

    Optional, where known (the class flags `is_normalized`, `has_sampler`, `has_modes`,
    `can_refine_points`, `has_joint_contexts` say which):
      * `log_normalizer(c)`: exact log Z(c);
      * `sample(key, c, n)`: exact samples;
      * `modes(c)`, `mode_stds(c)`, `mode_weights(c)`: true mode locations with a length scale and
        the mass of each mode;
      * `refine_points(x, c, num_iterations)`: x moved by a local solver towards the nearest
        exact solutions (IK: Levenberg-Marquardt on the end-effector error);
      * `contexts_from_joints(q)`: the context that a joint vector q reaches (IK: its forward
        kinematics), so that uniform joints and their contexts are valid (context,
        configuration) pairs.

    Subclasses implement `_log_prob_single(x, c)` for one point; `log_prob` validates shapes,
    broadcasts the leading axes and vectorises it (or calls an overridden `_log_prob_batched`).
    """

    name: ClassVar[str] = "target"
    is_normalized: ClassVar[bool] = False
    has_sampler: ClassVar[bool] = False
    has_modes: ClassVar[bool] = False
    can_refine_points: ClassVar[bool] = False
    has_joint_contexts: ClassVar[bool] = False

    dim: int
    context_dim: int

    @property
    @abc.abstractmethod
    def lower(self) -> np.ndarray:
        """Lower corner of the box covering the target's mass, shape (d,)."""

    @property
    @abc.abstractmethod
    def upper(self) -> np.ndarray:
        """Upper corner of the box covering the target's mass, shape (d,)."""

    @abc.abstractmethod
    def _log_prob_single(self, x: chex.Array, c: chex.Array) -> chex.Array:
        """Log-density of one point: x (d,), c (d_c,) -> scalar."""

    @abc.abstractmethod
    def sample_contexts(self, key: chex.PRNGKey, n: int) -> chex.Array:
        """Draws `n` contexts from the context distribution: -> (n, d_c) float32."""

    def log_prob(self, x: chex.Array, c: chex.Array) -> chex.Array:
        """Unnormalised log-density log p(x | c).

        Args:
          x: points, shape (..., d).
          c: contexts, shape (..., d_c); the leading axes of x and c broadcast (numpy rules).

        Returns:
          log p(x | c), shape broadcast(x.shape[:-1], c.shape[:-1]), floating dtype of the inputs
          (at least float32).

        Raises:
          ValueError: on a wrong trailing dimension or leading axes that do not broadcast.
        """
        x, c = jnp.asarray(x), jnp.asarray(c)
        check_trailing(x, self.dim, "x", self.name)
        check_trailing(c, self.context_dim, "c", self.name)
        try:
            jnp.broadcast_shapes(x.shape[:-1], c.shape[:-1])
        except ValueError as err:
            raise ValueError(
                f"{self.name}: leading axes of x {x.shape} and c {c.shape} do not broadcast"
            ) from err
        dtype = jnp.promote_types(jnp.result_type(x, c), jnp.float32)
        return self._log_prob_batched(x.astype(dtype), c.astype(dtype))

    def _log_prob_batched(self, x: chex.Array, c: chex.Array) -> chex.Array:
        """Validated, same-dtype x (..., d) and c (..., d_c) -> (...).

        The default broadcasts both and vectorises `_log_prob_single`; override it where
        per-context work can be shared across the points of a context.
        """
        batch = jnp.broadcast_shapes(x.shape[:-1], c.shape[:-1])
        xb = jnp.broadcast_to(x, batch + (self.dim,)).reshape(-1, self.dim)
        cb = jnp.broadcast_to(c, batch + (self.context_dim,)).reshape(-1, self.context_dim)
        return jax.vmap(self._log_prob_single)(xb, cb).reshape(batch)

    def log_normalizer(self, c: chex.Array) -> chex.Array:
        """Exact log Z(c), shape c.shape[:-1]; only where `is_normalized` or otherwise known."""
        raise NotImplementedError(f"target {self.name!r} has no known log-normaliser")

    def sample(self, key: chex.PRNGKey, c: chex.Array, n: int) -> chex.Array:
        """Exact samples, (n, B, d) for contexts c (B, d_c); only where `has_sampler`."""
        raise NotImplementedError(f"target {self.name!r} has no exact sampler")

    def modes(self, c: chex.Array) -> chex.Array:
        """True mode locations, (B, M, d) for contexts c (B, d_c); only where `has_modes`."""
        raise NotImplementedError(f"target {self.name!r} has no known modes")

    def mode_stds(self, c: chex.Array) -> chex.Array:
        """Length scale of each mode, (B, M); only where `has_modes`."""
        raise NotImplementedError(f"target {self.name!r} has no known modes")

    def mode_weights(self, c: chex.Array) -> chex.Array:
        """Probability mass of each mode, (B, M); only where `has_modes`."""
        raise NotImplementedError(f"target {self.name!r} has no known modes")

    def refine_points(self, x: chex.Array, c: chex.Array, num_iterations: int) -> chex.Array:
        """x (..., d) moved towards exact solutions for c (..., d_c), broadcast; only where
        `can_refine_points`."""
        raise NotImplementedError(f"target {self.name!r} cannot refine points")

    def contexts_from_joints(self, q: chex.Array) -> chex.Array:
        """The context each joint vector reaches: (..., dof) -> (..., d_c); only where
        `has_joint_contexts`."""
        raise NotImplementedError(f"target {self.name!r} has no contexts_from_joints")

    def check_contexts(self, c: chex.Array) -> chex.Array:
        """Returns c as an array after checking that it has shape (B, d_c).

        Raises:
          ValueError: if c is not of rank 2 with d_c columns.
        """
        c = jnp.asarray(c)
        if c.ndim != 2 or c.shape[-1] != self.context_dim:
            raise ValueError(
                f"{self.name}: contexts must have shape (B, {self.context_dim}), got {c.shape}"
            )
        return c


class RobotTarget(Target):
    """A target over a robot's configuration whose context is an end-effector goal.

    Robot targets provide, beside `Target`'s members:
      * `robot` (a `kinematics.Robot`) and `context`: "position" (c = goal position (3,), m) or
        "pose" (c = position + unit quaternion (w, x, y, z), (7,));
      * `joints(x)`: the robot joint vector inside x (all of x for a fixed-base arm, x without
        the floating base for a whole-body target);
      * `position_error(x, c)` (m) and, for pose contexts, `orientation_error(x, c)` (rad);
      * `goal_position_std`: the width of the end-effector position likelihood (m);
      * `skeleton_links`, `skeleton_edges`, `skeleton_points(x)` for drawing postures;
      * `workspace` and `check_reachable(c)` for validating goals.
    """

    context: str

    @property
    @abc.abstractmethod
    def robot(self):
        """The `kinematics.Robot` whose joints x holds."""

    @property
    @abc.abstractmethod
    def goal_position_std(self) -> float:
        """Standard deviation of the end-effector position likelihood (m)."""

    @abc.abstractmethod
    def joints(self, x: chex.Array) -> chex.Array:
        """The robot joint vector of x: (..., d) -> (..., robot.dof)."""

    @abc.abstractmethod
    def position_error(self, x: chex.Array, c: chex.Array) -> chex.Array:
        """End-effector distance to the goal position (m): x (..., d), c (..., d_c) -> (...)."""

    def orientation_error(self, x: chex.Array, c: chex.Array) -> chex.Array:
        """Geodesic angle to the goal rotation (rad), (...); only for pose contexts."""
        raise NotImplementedError(f"target {self.name!r} has {self.context} contexts")

    @property
    @abc.abstractmethod
    def skeleton_links(self) -> tuple[str, ...]:
        """Links drawn as the robot's skeleton."""

    @property
    @abc.abstractmethod
    def skeleton_edges(self) -> tuple[tuple[int, int], ...]:
        """Pairs of indices into `skeleton_links` joined by a line."""

    @abc.abstractmethod
    def skeleton_points(self, x: chex.Array) -> chex.Array:
        """Positions of `skeleton_links` (m): (..., d) -> (..., L, 3)."""

    @property
    @abc.abstractmethod
    def workspace(self) -> tuple[np.ndarray, float]:
        """(centre (3,), radius) of a sphere bounding every reachable goal position (m)."""

    @abc.abstractmethod
    def check_reachable(self, c: chex.Array) -> np.ndarray:
        """c as a numpy array after checking that every goal lies in the workspace.

        Raises:
          WorkspaceError: naming the goals outside it.
        """


def check_trailing(a: chex.Array, size: int, what: str, owner: str) -> None:
    """Raises ValueError unless `a` has rank >= 1 and trailing dimension `size`."""
    if a.ndim < 1 or a.shape[-1] != size:
        raise ValueError(f"{owner}: {what} must have shape (..., {size}), got {a.shape}")


def uniform_box(key: chex.PRNGKey, n: int, low: np.ndarray, high: np.ndarray) -> chex.Array:
    """Draws n points uniformly from the box [low, high]: -> (n, len(low)) float32."""
    low = jnp.asarray(low, jnp.float32)
    high = jnp.asarray(high, jnp.float32)
    return jax.random.uniform(key, (n,) + low.shape, jnp.float32, low, high)
