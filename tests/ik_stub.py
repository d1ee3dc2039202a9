"""A 3-link planar arm dressed as an IK target (a `targets.RobotTarget`), with an independent
damped-least-squares refinement, for fast tests of the IK evaluation code; and the base of the
tests' stand-in models."""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from avips_jax.sampling_model import SamplingModel
from avips_jax.targets.base import RobotTarget
from avips_jax.targets.planar import PlanarIK


@dataclasses.dataclass(frozen=True)
class StubRobot:
    """What the evaluation reads of a kinematics Robot: dof and joint limits."""

    dof: int
    limit: float = np.pi

    @property
    def lower(self) -> np.ndarray:
        return np.full(self.dof, -self.limit)

    @property
    def upper(self) -> np.ndarray:
        return np.full(self.dof, self.limit)


@dataclasses.dataclass(frozen=True)
class PlanarIKStub(PlanarIK, RobotTarget):
    """Planar arm with position contexts (2-D goals) and the IK-target extras."""

    name: ClassVar[str] = "planar_ik_stub"
    context: ClassVar[str] = "position"

    @property
    def robot(self) -> StubRobot:
        return StubRobot(self.num_links)

    def joints(self, x):
        return jnp.asarray(x)

    def position_error(self, x, c):
        return jnp.linalg.norm(self.end_effector(x) - jnp.asarray(c), axis=-1)

    def skeleton_points(self, x):
        pts = self.link_positions(x)
        return jnp.concatenate([pts, jnp.zeros(pts.shape[:-1] + (1,), pts.dtype)], axis=-1)

    @property
    def skeleton_links(self):
        return tuple(f"link_{i}" for i in range(self.num_links + 1))

    @property
    def skeleton_edges(self):
        return tuple((i, i + 1) for i in range(self.num_links))

    @property
    def goal_position_std(self):
        return self.likelihood_std

    @property
    def workspace(self):
        return np.zeros(3), self.num_links * self.link_length

    def check_reachable(self, c):
        return np.asarray(c, np.float64)


class StubModel(SamplingModel):
    """A stand-in model without parameters: subclasses define `sample` (and `dim`)."""

    num_parameters = 0


def make_stub(num_links: int = 3) -> PlanarIKStub:
    return PlanarIKStub(
        num_links=num_links, likelihood_std=0.05, min_radius=1.5, max_radius=2.5, joint_std=1.0
    )


def make_refine(target: PlanarIKStub, num_iterations: int = 40, damping: float = 1e-4):
    """A refine_fn(robot, q0 (..., n), position (..., 2), rotation=None) for the stub."""

    def one(q, goal):
        def step(q, _):
            jac = jax.jacfwd(target.end_effector)(q)  # (2, n)
            err = goal - target.end_effector(q)
            dq = jac.T @ jnp.linalg.solve(jac @ jac.T + damping * jnp.eye(2), err)
            return jnp.mod(q + dq + np.pi, 2 * np.pi) - np.pi, None  # same pose, in the limits

        return jax.lax.scan(step, q, None, length=num_iterations)[0]

    @jax.jit
    def batched(q0, position):
        shape = jnp.broadcast_shapes(q0.shape[:-1], position.shape[:-1])
        q = jnp.broadcast_to(q0, shape + q0.shape[-1:]).reshape(-1, q0.shape[-1])
        g = jnp.broadcast_to(position, shape + (2,)).reshape(-1, 2)
        return jax.vmap(one)(q, g).reshape(shape + q0.shape[-1:])

    def refine(robot, q0, position, rotation=None):
        assert rotation is None
        return batched(jnp.asarray(q0), jnp.asarray(position))

    return refine
