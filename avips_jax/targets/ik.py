"""IK targets: joint posteriors of a robot given an end-effector position or pose (context)."""

import dataclasses
import functools
import math
from typing import ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np

from avips_jax import kinematics, refine, rotations
from avips_jax.kinematics import robot as robot_lib
from avips_jax.targets import base, ik_robot, skeleton, workspace
from avips_jax.targets.base import WorkspaceError

_LOG_2PI = math.log(2.0 * math.pi)
CONTEXTS = ("position", "pose")
# Tolerance on |quaternion| - 1 accepted by `check_reachable` (a 4-decimal quaternion passes).
QUATERNION_NORM_TOL = 1e-3

__all__ = ["IKTarget", "WorkspaceError", "load_robot", "soft_uniform_log_prob"]


@functools.cache
def load_robot(name: str) -> robot_lib.Robot:
    """`kinematics.load_robot(name)`, cached: one Robot object (and jit cache) per name."""
    return kinematics.load_robot(name)


def soft_uniform_log_prob(v: chex.Array, low, high, std: float) -> chex.Array:
    """Elementwise log Phi((v - low) / std) + log Phi((high - v) / std) (no reduction).

    The soft-uniform density of tf_robot_learning's SoftUniformNormalCdf (temperature 1),
    unnormalised: ~0 well inside [low, high], a Gaussian-like tail outside.
    """
    return jax.scipy.special.log_ndtr((v - low) / std) + jax.scipy.special.log_ndtr(
        (high - v) / std
    )


def gaussian_log_prob(sq_dist: chex.Array, std: float, dim: int) -> chex.Array:
    """log N of an isotropic dim-D Gaussian with standard deviation std at squared distance."""
    return -0.5 * sq_dist / std**2 - dim * math.log(std) - 0.5 * dim * _LOG_2PI


def sampling_box(robot: robot_lib.Robot) -> tuple[np.ndarray, np.ndarray]:
    """Joint limits for context sampling: ranges wider than 2 pi become [-pi, pi] (IKFlow)."""
    lower, upper = np.array(robot.lower), np.array(robot.upper)
    wide = upper - lower > 2 * np.pi
    return np.where(wide, -np.pi, lower), np.where(wide, np.pi, upper)


@dataclasses.dataclass(frozen=True)
class IKTarget(base.RobotTarget):
    """Posterior over the joints q of a robot whose end effector must reach a context c.

    x = q in R^dof (rad), in the order `robot.joint_names`. Context: the end-effector position
    (3,) in the root frame (m), or for context="pose" position + unit quaternion (w, x, y, z) with
    w >= 0, (7,).

      log p(q | c) = sum_j [log Phi((q_j - l_j) / s_l) + log Phi((u_j - q_j) / s_l)]
                     + log N(p(q); c_pos, s_p^2 I_3)
                     [- ||R(q) - R_c||_F^2 / (4 s_r^2) - 3 log s_r - 1.5 log 2 pi]   (pose)

    with s_l = limit_std, s_p = position_std, s_r = rotation_std. The orientation term is the
    chordal form: ||R - R_c||_F^2 = 4 (1 - cos theta) for the geodesic angle theta, so the term is
    -(1 - cos theta) / s_r^2 ~ -theta^2 / (2 s_r^2), smooth everywhere, with the normaliser of a
    3-D Gaussian in the rotation vector. Unnormalised (the joint prior and the FK make Z(c)
    unknown).

    Contexts (the IKFlow protocol): FK of joints uniform in the limits (ranges wider than 2 pi
    replaced by [-pi, pi]). Box: the joint limits.

    Robot: `robot_name` is a registered name (`kinematics.available_robots()`, with its fixed
    chain) or a robot file; for a file, `root`, `tip`, `joint_names` ("j1,j2,...") and `locked`
    ("joint=value,...") choose the chain (`ik_robot.load`: empty means the file's root link, its
    one leaf link, every movable joint on the path, nothing locked), and a chain that cannot move
    its tip is refused when the target is built.

    Workspace: `check_reachable` rejects positions farther from the first joint's origin than
    the chain's stretched length (`workspace.first_joint_sphere`, derived from the kinematic tree;
    e.g. Panda: 0.986 m around (0, 0, 0.333)). Inside the sphere a position may still be
    unreachable under the joint limits.
    """

    robot_name: str = "panda"
    root: str = ""
    tip: str = ""
    joint_names: str = ""
    locked: str = ""
    context: str = "position"
    position_std: float = 0.01
    rotation_std: float = 0.1
    limit_std: float = 0.05

    name: ClassVar[str] = "ik"
    can_refine_points: ClassVar[bool] = True
    has_joint_contexts: ClassVar[bool] = True

    def __post_init__(self):
        if self.context not in CONTEXTS:
            raise ValueError(f"ik: context must be one of {CONTEXTS}, got {self.context!r}")
        for field in ("position_std", "rotation_std", "limit_std"):
            value = getattr(self, field)
            if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
                raise ValueError(f"ik: {field} must be a finite number > 0, got {value!r}")
        self.robot  # noqa: B018  (fails early with UnknownRobotError naming the robots)

    @property
    def robot(self) -> robot_lib.Robot:
        return ik_robot.load(self.robot_name, self.root, self.tip, self.joint_names, self.locked)

    @property
    def dim(self) -> int:
        return self.robot.dof

    @property
    def goal_position_std(self) -> float:
        return self.position_std

    @property
    def context_dim(self) -> int:
        return 3 if self.context == "position" else 7

    @property
    def lower(self) -> np.ndarray:
        return np.array(self.robot.lower)

    @property
    def upper(self) -> np.ndarray:
        return np.array(self.robot.upper)

    @property
    def workspace(self) -> tuple[np.ndarray, float]:
        """(centre (3,), radius) of the sphere bounding every reachable position (m)."""
        return workspace.first_joint_sphere(self.robot, self.robot.end_effector)

    def joints(self, x: chex.Array) -> chex.Array:
        """The robot joint vector of x: (..., dof) -> (..., dof) (the identity here)."""
        x = jnp.asarray(x)
        base.check_trailing(x, self.dim, "x", self.name)
        return x

    def joint_prior(self, q: chex.Array) -> chex.Array:
        """Soft-uniform joint-limit log-prior, (..., dof) -> (...)."""
        lower = jnp.asarray(self.robot.lower, q.dtype)
        upper = jnp.asarray(self.robot.upper, q.dtype)
        return jnp.sum(soft_uniform_log_prob(q, lower, upper, self.limit_std), axis=-1)

    def _log_prob_single(self, x, c):
        return self._log_prob_batched(x[None], c[None])[0]

    def _log_prob_batched(self, x, c):
        batch = jnp.broadcast_shapes(x.shape[:-1], c.shape[:-1])
        xf = jnp.broadcast_to(x, batch + (self.dim,)).reshape(-1, self.dim)
        cf = jnp.broadcast_to(c, batch + (self.context_dim,)).reshape(-1, self.context_dim)
        pose = self.robot.end_effector_pose(xf)  # one FK call on the flattened batch
        sq = jnp.sum((pose[:, :3, 3] - cf[:, :3]) ** 2, axis=-1)
        log_p = self.joint_prior(xf) + gaussian_log_prob(sq, self.position_std, 3)
        if self.context == "pose":
            chordal = jnp.sum(
                (pose[:, :3, :3] - rotations.quaternion_to_matrix(cf[:, 3:])) ** 2, (-2, -1)
            )
            log_p = log_p + gaussian_log_prob(0.5 * chordal, self.rotation_std, 3)
        return log_p.reshape(batch)

    def contexts_from_joints(self, q: chex.Array) -> chex.Array:
        """Contexts reached by joints q: (..., dof) -> (..., context_dim) (position [+ quat])."""
        pose = self.robot.end_effector_pose(self.joints(q))
        if self.context == "position":
            return pose[..., :3, 3]
        return jnp.concatenate(
            [pose[..., :3, 3], rotations.matrix_to_quaternion(pose[..., :3, :3])], -1
        )

    def sample_contexts(self, key: chex.PRNGKey, n: int) -> chex.Array:
        """Contexts of joints uniform in `sampling_box`: -> (n, context_dim) float32."""
        q = base.uniform_box(key, n, *sampling_box(self.robot))
        return self.contexts_from_joints(q)

    def refine_points(self, x: chex.Array, c: chex.Array, num_iterations: int) -> chex.Array:
        """x (..., dof) after `num_iterations` Levenberg-Marquardt steps towards the context's
        position (and orientation) from c (..., context_dim), broadcast (`refine.refine`: the
        joint limits respected, never worse than the clamped start)."""
        x, c = self._broadcast(x, c)
        rotation = rotations.quaternion_to_matrix(c[..., 3:]) if self.context == "pose" else None
        return refine.refine(self.robot, x, c[..., :3], rotation, num_iterations=num_iterations)

    def _broadcast(self, x, c):
        x, c = jnp.asarray(x), jnp.asarray(c)
        base.check_trailing(x, self.dim, "x", self.name)
        base.check_trailing(c, self.context_dim, "c", self.name)
        return x, c

    def position_error(self, x: chex.Array, c: chex.Array) -> chex.Array:
        """||p(x) - c_pos|| in metres; x (..., dof), c (..., context_dim) broadcast -> (...)."""
        x, c = self._broadcast(x, c)
        return jnp.linalg.norm(self.robot.end_effector_pose(x)[..., :3, 3] - c[..., :3], axis=-1)

    def orientation_error(self, x: chex.Array, c: chex.Array) -> chex.Array:
        """Geodesic angle (rad, in [0, pi]) between R(x) and the context's rotation -> (...).

        Raises:
            ValueError: for position contexts (they have no orientation).
        """
        if self.context != "pose":
            raise ValueError(f"ik: orientation_error needs context='pose', not {self.context!r}")
        x, c = self._broadcast(x, c)
        rot = self.robot.end_effector_pose(x)[..., :3, :3]
        return rotations.geodesic_angle(rotations.quaternion_to_matrix(c[..., 3:]), rot)

    @property
    def skeleton_links(self) -> tuple[str, ...]:
        """Links drawn in stick figures: the root -> end-effector chain."""
        return self.robot.chain_links

    def skeleton_points(self, x: chex.Array) -> chex.Array:
        """Positions of `skeleton_links` (m, root frame): (..., dof) -> (..., P, 3)."""
        return self.robot.link_poses(self.joints(x), self.skeleton_links)[..., :3, 3]

    @property
    def skeleton_edges(self) -> tuple[tuple[int, int], ...]:
        """(parent, child) index pairs into `skeleton_points`."""
        return skeleton.edges(self.robot, self.skeleton_links)

    def check_reachable(self, c: chex.Array) -> np.ndarray:
        """Checks that contexts lie inside the workspace sphere (see the class docstring).

        Args:
            c: (..., context_dim) contexts, concrete values.

        Returns:
            c as a float64 numpy array.

        Raises:
            ValueError: wrong shape, non-finite values, or (pose) a quaternion that is not unit.
            WorkspaceError: a position outside the sphere; the message names the first such
                context, its distance and the reach.
        """
        c = np.asarray(c, dtype=np.float64)
        if c.ndim < 1 or c.shape[-1] != self.context_dim:
            raise ValueError(
                f"ik ({self.robot_name}, {self.context}): contexts must have shape "
                f"(..., {self.context_dim}), got {c.shape}"
            )
        if not np.all(np.isfinite(c)):
            raise ValueError(f"ik: contexts hold NaN or inf values: {c.tolist()}")
        if self.context == "pose":
            norms = np.linalg.norm(c[..., 3:], axis=-1)
            bad = np.abs(norms - 1.0) > QUATERNION_NORM_TOL
            if np.any(bad):
                i = tuple(np.argwhere(bad)[0])
                raise ValueError(
                    f"ik: the quaternion (w, x, y, z) of context {c[i].tolist()} has norm "
                    f"{norms[i]:.6f}; expected a unit quaternion"
                )
        centre, radius = self.workspace
        dist = np.linalg.norm(c[..., :3] - centre, axis=-1)
        if np.any(dist > radius):
            i = tuple(np.argwhere(dist > radius)[0])
            raise WorkspaceError(
                f"target position {c[i][:3].tolist()} is outside the workspace of "
                f"{self.robot_name!r}: {dist[i]:.4f} m from the first joint at "
                f"{centre.tolist()}, but the arm reaches at most {radius:.4f} m"
            )
        return c
