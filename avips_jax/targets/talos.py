"""The TALOS whole-body IK target (GMMVI benchmark; docs/math.md §8.2, docs/robots.md §2.4)."""

import dataclasses
import math
from typing import ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np

from avips_jax import kinematics
from avips_jax.kinematics import robot as robot_lib
from avips_jax.targets import base, ik, skeleton, workspace
from avips_jax.targets.base import WorkspaceError

NUM_JOINTS = 28
GRIPPER = "gripper_left_base_link"
LEFT_SOLE, RIGHT_SOLE = "left_sole_link", "right_sole_link"
LEFT_FOOT_POSITION = (-0.02, 0.09, 0.0)
RIGHT_FOOT_POSITION = (-0.02, -0.09, 0.0)
DEFAULT_CONTEXT = (0.1, 0.5, 1.0)
COM_REFERENCES = ("left_foot", "feet_center")
# Floating-base box (network scaling and uniform proposals only; log p has no prior on the base):
# x, y, z (m), roll, pitch, yaw (rad). It covers the 1st-99th percentiles (and all but a few
# outliers) of the base poses of 1907 near-optimal postures (within 3 nats of the best of 4 Adam
# runs) for 512 contexts of the default context prior: x [-0.23, 0.16], y [-0.13, 0.28],
# z [0.55, 1.08], roll [-1.08, 0.21], pitch [-1.24, 1.54] (bending forward to reach low),
# yaw [-0.73, 0.68]. Standing straight at q = 0 puts the base at z = 1.083.
BASE_LOWER = (-0.3, -0.3, 0.5, -1.2, -1.3, -1.0)
BASE_UPPER = (0.3, 0.3, 1.1, 1.2, 1.7, 1.0)
_SKELETON_LINKS = (
    "base_link",
    "torso_2_link",
    "arm_left_1_link",
    "arm_left_4_link",
    "arm_left_7_link",
    GRIPPER,
    "arm_right_1_link",
    "arm_right_4_link",
    "arm_right_7_link",
    "gripper_right_base_link",
    "leg_left_1_link",
    "leg_left_4_link",
    "leg_left_6_link",
    LEFT_SOLE,
    "leg_right_1_link",
    "leg_right_4_link",
    "leg_right_6_link",
    RIGHT_SOLE,
)

__all__ = ["TalosWholeBody", "WorkspaceError"]


@dataclasses.dataclass(frozen=True)
class TalosWholeBody(base.RobotTarget):
    """Whole-body posture of TALOS whose left gripper reaches a position c, standing on both feet.

    x (34,) = 28 joints (rad; order: torso_1, torso_2, arm_right_1..7, arm_left_1..7,
    leg_right_1..6, leg_left_1..6 = `robot.joint_names`), floating-base position (3, m) and
    roll-pitch-yaw (3, rad; R_base = Rz(yaw) Ry(pitch) Rx(roll)). World pose of a link:
    [R_base | p_base] · T_link(q) (`kinematics.floating_base_pose`, `world_poses`).
    Context c (3,): desired world position of `gripper_left_base_link` (m).

      log p(x | c) = sum_j [log Phi((q_j - lo_j)/s_l) + log Phi((hi_j - q_j)/s_l)]      (1)
                   + sum_{xy} [log Phi((v + b)/s_c) + log Phi((b - v)/s_c)],            (2)
                       v = CoM_xy - left_foot_xy (world), b = com_limit, s_c = com_std
                   + log N(f_R(x); [(-0.02, -0.09, 0), vec I], diag(s_f^2 I_3, s_r^2 I_9))  (3)
                   + log N(f_L(x); [(-0.02,  0.09, 0), vec I], same)                        (4)
                   + log N(gripper position; c, s_g^2 I_3)                                  (5)

    with f = (sole position, flattened sole rotation). Defaults s_l = 0.05, b = 0.14,
    s_c = 0.01, s_f = 0.02, s_r = 0.1, s_g = 0.02 as in gmmvi. The CoM is the whole-body CoM
    from the URDF inertials including base_link (90.27 kg, `robot.center_of_mass`), which
    gmmvi's chain-only CoM approximated. gmmvi's code measures the CoM against the left foot,
    although a support-polygon reading would use the centre between the feet:
    `com_reference="feet_center"` selects the midpoint of both soles instead. Unnormalised.

    Contexts: the gmmvi context prior c = r (sin b cos a, sin b sin a, cos b), r ~ U(min_radius,
    max_radius), a ~ U(min_azimuth, max_azimuth), b ~ U(min_polar, max_polar) (angles in rad;
    the source's upper polar bound rad2deg(170) is read as 170 degrees). The world origin lies
    on the floor between the feet, so polar angles above 90 degrees put the gripper below the
    floor. Default: polar in [10, 90] degrees (the upper hemisphere), because of reachability:

    Reachability (measured: 4 Adam runs of 3000 steps on -log p per context, float32; reached =
    gripper error < 1 cm, both soles < 5 mm and ||R_sole - I||_F < 0.05, CoM inside the box,
    joints inside the limits): with the full prior (polar up to 170 degrees) 191 of 256
    contexts were reached. Half the contexts (132) lie below the floor; 64 of them were missed
    and 13 of the 68 reached ones put the pelvis below the floor (z ~ -0.2 m, the robot turned
    upside down through the floor, which the target does not model), the rest bend the gripper
    through the floor plane. In the upper hemisphere 123 of 124 (full-prior sample) and 501 of
    512 (default prior) were reached; the 11 misses came within 4-31 mm.
    Set max_polar=math.radians(170) for the unrestricted prior.

    Box (network scaling, uniform proposals): joint limits; base `BASE_LOWER`..`BASE_UPPER`.
    """

    limit_std: float = 0.05
    com_limit: float = 0.14
    com_std: float = 0.01
    foot_position_std: float = 0.02
    foot_rotation_std: float = 0.1
    gripper_std: float = 0.02
    com_reference: str = "left_foot"
    min_radius: float = 0.2
    max_radius: float = 1.0
    min_azimuth: float = -math.pi / 2
    max_azimuth: float = math.pi / 2
    min_polar: float = math.radians(10.0)
    max_polar: float = math.radians(90.0)

    name: ClassVar[str] = "talos"
    dim: ClassVar[int] = NUM_JOINTS + 6
    context_dim: ClassVar[int] = 3
    context: ClassVar[str] = "position"

    def __post_init__(self):
        stds = ("limit_std", "com_limit", "com_std", "foot_position_std", "foot_rotation_std")
        for field in stds + ("gripper_std",):
            value = getattr(self, field)
            if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
                raise ValueError(f"talos: {field} must be a finite number > 0, got {value!r}")
        if self.com_reference not in COM_REFERENCES:
            raise ValueError(
                f"talos: com_reference must be one of {COM_REFERENCES}, got {self.com_reference!r}"
            )
        ranges = (
            ("radius", self.min_radius, self.max_radius, 0.0, math.inf),
            ("azimuth", self.min_azimuth, self.max_azimuth, -math.pi, math.pi),
            ("polar", self.min_polar, self.max_polar, 0.0, math.pi),
        )
        for what, low, high, floor, ceil in ranges:
            if not floor <= low <= high <= ceil:
                raise ValueError(
                    f"talos: need {floor} <= min_{what} <= max_{what} <= {ceil}, "
                    f"got [{low}, {high}]"
                )

    @property
    def robot(self) -> robot_lib.Robot:
        return ik.load_robot("talos")

    @property
    def lower(self) -> np.ndarray:
        return np.concatenate([self.robot.lower, BASE_LOWER])

    @property
    def upper(self) -> np.ndarray:
        return np.concatenate([self.robot.upper, BASE_UPPER])

    @property
    def goal_position_std(self) -> float:
        return self.gripper_std

    def joints(self, x: chex.Array) -> chex.Array:
        """The 28 joint angles of x: (..., 34) -> (..., 28)."""
        x = jnp.asarray(x)
        base.check_trailing(x, self.dim, "x", self.name)
        return x[..., :NUM_JOINTS]

    def base_pose(self, x: chex.Array) -> chex.Array:
        """World pose of base_link: (..., 34) -> (..., 4, 4)."""
        x = jnp.asarray(x)
        base.check_trailing(x, self.dim, "x", self.name)
        return kinematics.floating_base_pose(x[..., NUM_JOINTS : NUM_JOINTS + 3], x[..., -3:])

    def world_link_poses(self, x: chex.Array, links) -> chex.Array:
        """World poses of links: (..., 34) -> (..., len(links), 4, 4)."""
        poses = self.robot.link_poses(self.joints(x), tuple(links))
        return kinematics.world_poses(self.base_pose(x), poses)

    def center_of_mass(self, x: chex.Array) -> chex.Array:
        """Whole-body CoM in the world frame (m): (..., 34) -> (..., 3)."""
        pose = self.base_pose(x)
        com = self.robot.center_of_mass(self.joints(x))
        # HIGHEST: GPUs would otherwise multiply float32 in TF32 (1e-3 relative error).
        rotated = jnp.einsum(
            "...ij,...j->...i", pose[..., :3, :3], com, precision=jax.lax.Precision.HIGHEST
        )
        return rotated + pose[..., :3, 3]

    def _log_prob_single(self, x, c):
        return self._log_prob_batched(x[None], c[None])[0]

    def _log_prob_batched(self, x, c):
        batch = jnp.broadcast_shapes(x.shape[:-1], c.shape[:-1])
        xf = jnp.broadcast_to(x, batch + (self.dim,)).reshape(-1, self.dim)
        cf = jnp.broadcast_to(c, batch + (3,)).reshape(-1, 3)
        poses = self.world_link_poses(xf, (GRIPPER, LEFT_SOLE, RIGHT_SOLE))  # (N, 3, 4, 4)
        log_p = self._stance_terms(xf, poses)
        sq = jnp.sum((poses[:, 0, :3, 3] - cf) ** 2, axis=-1)
        log_p += ik.gaussian_log_prob(sq, self.gripper_std, 3)
        return log_p.reshape(batch)

    def stance_log_prob(self, x: chex.Array) -> chex.Array:
        """log p without the gripper term (joint limits, CoM over the support, both feet at their
        stances): a posture's quality whatever the context. (..., 34) -> (...)."""
        x = jnp.asarray(x)
        base.check_trailing(x, self.dim, "x", self.name)
        xf = x.reshape(-1, self.dim)
        poses = self.world_link_poses(xf, (GRIPPER, LEFT_SOLE, RIGHT_SOLE))
        return self._stance_terms(xf, poses).reshape(x.shape[:-1])

    def gripper_position(self, x: chex.Array) -> chex.Array:
        """World position of the left gripper (the context a posture reaches): (..., 34) ->
        (..., 3) metres."""
        return self.world_link_poses(x, (GRIPPER,))[..., 0, :3, 3]

    def _stance_terms(self, xf, poses):
        """Limits + CoM + feet terms for xf (N, 34) and its (gripper, left, right) poses."""
        lower = jnp.asarray(self.robot.lower, xf.dtype)
        upper = jnp.asarray(self.robot.upper, xf.dtype)
        log_p = jnp.sum(
            ik.soft_uniform_log_prob(xf[:, :NUM_JOINTS], lower, upper, self.limit_std), -1
        )
        log_p += self._com_term(xf, poses)
        for index, target in ((2, RIGHT_FOOT_POSITION), (1, LEFT_FOOT_POSITION)):
            log_p += self._foot_term(poses[:, index], target)
        return log_p

    def _com_term(self, x, poses):
        feet_xy = poses[:, 1, :2, 3]
        if self.com_reference == "feet_center":
            feet_xy = 0.5 * (feet_xy + poses[:, 2, :2, 3])
        v = self.center_of_mass(x)[:, :2] - feet_xy
        b = self.com_limit
        return jnp.sum(ik.soft_uniform_log_prob(v, -b, b, self.com_std), axis=-1)

    def _foot_term(self, pose, position):
        sq_pos = jnp.sum((pose[:, :3, 3] - jnp.asarray(position, pose.dtype)) ** 2, axis=-1)
        sq_rot = jnp.sum((pose[:, :3, :3] - jnp.eye(3, dtype=pose.dtype)) ** 2, axis=(-2, -1))
        return ik.gaussian_log_prob(sq_pos, self.foot_position_std, 3) + ik.gaussian_log_prob(
            sq_rot, self.foot_rotation_std, 9
        )

    def sample_contexts(self, key: chex.PRNGKey, n: int) -> chex.Array:
        """Contexts from the (restricted) gmmvi context prior: -> (n, 3) float32."""
        k_r, k_a, k_b = jax.random.split(key, 3)
        r = jax.random.uniform(k_r, (n,), jnp.float32, self.min_radius, self.max_radius)
        a = jax.random.uniform(k_a, (n,), jnp.float32, self.min_azimuth, self.max_azimuth)
        b = jax.random.uniform(k_b, (n,), jnp.float32, self.min_polar, self.max_polar)
        sin_b = jnp.sin(b)
        return r[:, None] * jnp.stack([sin_b * jnp.cos(a), sin_b * jnp.sin(a), jnp.cos(b)], -1)

    def position_error(self, x: chex.Array, c: chex.Array) -> chex.Array:
        """||left gripper position - c|| (m): x (..., 34), c (..., 3) broadcast -> (...)."""
        c = jnp.asarray(c)
        base.check_trailing(c, 3, "c", self.name)
        return jnp.linalg.norm(self.gripper_position(x) - c, axis=-1)

    def skeleton_points(self, x: chex.Array) -> chex.Array:
        """World positions of `skeleton_links`: (..., 34) -> (..., P, 3)."""
        return self.world_link_poses(x, _SKELETON_LINKS)[..., :3, 3]

    @property
    def skeleton_links(self) -> tuple[str, ...]:
        return _SKELETON_LINKS

    @property
    def skeleton_edges(self) -> tuple[tuple[int, int], ...]:
        return skeleton.edges(self.robot, _SKELETON_LINKS)

    @property
    def workspace(self) -> tuple[np.ndarray, float]:
        """(centre, radius): every gripper position with the left sole on its target lies within
        radius of the target (tree-derived bound, `workspace.distance_bound`)."""
        radius = workspace.distance_bound(self.robot, LEFT_SOLE, GRIPPER)
        return np.array(LEFT_FOOT_POSITION), radius

    def check_reachable(self, c: chex.Array) -> np.ndarray:
        """Checks contexts (..., 3) against `workspace` and returns them as float64 numpy.

        Raises:
            ValueError: wrong shape or non-finite values.
            WorkspaceError: a gripper position farther from the left-foot target than the
                stretched leg + torso + arm chain.
        """
        c = np.asarray(c, dtype=np.float64)
        if c.ndim < 1 or c.shape[-1] != 3:
            raise ValueError(f"talos: contexts must have shape (..., 3), got {c.shape}")
        if not np.all(np.isfinite(c)):
            raise ValueError(f"talos: contexts hold NaN or inf values: {c.tolist()}")
        centre, radius = self.workspace
        dist = np.linalg.norm(c - centre, axis=-1)
        if np.any(dist > radius):
            i = tuple(np.argwhere(dist > radius)[0])
            raise WorkspaceError(
                f"gripper target {c[i].tolist()} is outside the TALOS workspace: {dist[i]:.4f} m "
                f"from the left-foot target {centre.tolist()}, but legs, torso and arm reach "
                f"at most {radius:.4f} m"
            )
        return c
