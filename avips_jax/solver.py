"""`IKSolver`: a trained conditional mixture as an inverse-kinematics solver.

    solver = IKSolver.load("runs/panda")                           # latest checkpoint
    solver = IKSolver.pretrained("panda")                          # shipped with the package
    q = solver.sample(jax.random.key(0), [0.4, 0.1, 0.6], n=20)    # (20, 7) joint vectors
    q = solver.sample(key, targets, n=250, refine=True)            # (T, 250, 7), exact IK
    err = solver.target.position_error(q, targets[:, None])        # (T, 250) metres

Sampling, clamping to the joint limits and (optionally) Levenberg-Marquardt refinement run as
one jitted call (compiled once per number of targets, n and options).
"""

import dataclasses
import functools
import os

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from avips_jax import hardware, pytree
from avips_jax import model as model_lib
from avips_jax.kinematics import robot as robot_lib
from avips_jax.targets import base


@dataclasses.dataclass(frozen=True)
class IKSolver:
    """Samples joint configurations that reach end-effector targets.

    Attributes:
        target: the IK target the model was trained on (`targets.IKTarget`: x is the joint vector
            of `target.robot`; contexts are positions (3,) or poses (7,)).
        model: the trained `model.AmortizedGMM` q(x | c).
        config: the run's config (None when built in memory without one).
    """

    target: base.RobotTarget
    model: model_lib.AmortizedGMM
    config: ml_collections.ConfigDict | None = None

    def __post_init__(self):
        is_robot = isinstance(self.target, base.RobotTarget)
        if not is_robot or self.target.dim != self.robot.dof:
            joints = self.robot.dof if is_robot else None
            raise ValueError(
                f"IKSolver needs an IK target whose samples are a robot's joint vector; target "
                f"{self.target.name!r} has dim {self.target.dim} and robot {joints} joints"
            )
        if self.model.dim != self.target.dim or self.model.context_dim != self.target.context_dim:
            raise ValueError(
                f"model (d={self.model.dim}, d_c={self.model.context_dim}) does not fit target "
                f"{self.target.name!r} (d={self.target.dim}, d_c={self.target.context_dim})"
            )
        bad = pytree.nonfinite_paths(self.model.variables)
        if bad:
            raise ValueError(
                f"the model's parameters hold NaN or infinity (in {', '.join(bad[:3])}): it "
                "comes from a run that diverged"
            )

    def __repr__(self) -> str:
        """One line: robot, joints, contexts and the model's size (not its weights)."""
        model = self.model
        if isinstance(model, model_lib.AmortizedGMM):
            described = (
                f"AmortizedGMM({model.num_active} of {np.size(model.active)} components "
                f"active, {model.num_parameters} parameters)"
            )
        else:
            described = type(model).__name__
        return (
            f"IKSolver(robot={self.robot.name!r}, joints={self.robot.dof}, "
            f"context={self.target.context!r}, model={described})"
        )

    @classmethod
    def load(cls, workdir: str | os.PathLike, step: int | None = None) -> "IKSolver":
        """The solver of a training run directory (`checkpoint.load_model`).

        Raises:
            checkpoint.CheckpointNotFoundError (a FileNotFoundError): no run, config or checkpoint.
            checkpoint.CheckpointError (a ValueError): damaged files.
            ValueError: the run's target is not an IK target.
        """
        from avips_jax import checkpoint  # heavy (orbax): only needed here

        run = checkpoint.load_model(workdir, step)
        return cls(target=run.target, model=run.model, config=run.config)

    @classmethod
    def pretrained(cls, name: str = "panda") -> "IKSolver":
        """The solver of a model that ships with the package (`avips_jax.pretrained`).

        Raises:
            pretrained.PretrainedModelNotFoundError (a FileNotFoundError): unknown name.
        """
        from avips_jax import pretrained

        return cls.load(pretrained.path(name))

    @property
    def robot(self) -> robot_lib.Robot:
        return self.target.robot

    @property
    def context(self) -> str:
        """ "position" or "pose" (what a target vector holds)."""
        return self.target.context

    def check_targets(self, targets: chex.Array) -> np.ndarray:
        """targets as a float64 (T, d_c) array, after checking shape, values and workspace.

        Args:
            targets: (T, d_c) or (d_c,): positions (m, root frame) or, for pose-trained models,
                position + unit quaternion (w, x, y, z).

        Raises:
            ValueError: not numeric, a wrong shape, NaN/inf, or a non-unit quaternion.
            targets.WorkspaceError: a position outside the robot's workspace.
        """
        d_c = self.target.context_dim
        what = "positions (x, y, z)" if d_c == 3 else "poses (x, y, z, qw, qx, qy, qz)"
        try:
            c = np.asarray(targets, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"targets must be numeric {what}: {err}") from err
        if c.ndim == 1:
            c = c[None]
        if c.ndim != 2 or c.shape[-1] != d_c or c.shape[0] < 1:
            raise ValueError(
                f"targets must have shape (T, {d_c}) or ({d_c},) for a model trained on "
                f"{self.context} contexts ({what}), got {np.shape(targets)}"
            )
        return self.target.check_reachable(c)

    def sample(
        self,
        key: chex.PRNGKey | int,
        targets: chex.Array,
        n: int = 250,
        refine: bool = False,
        *,
        clamp: bool = True,
        num_iterations: int = 30,
        latent_scale: float = 1.0,
    ) -> jax.Array:
        """n joint configurations per target.

        Args:
            key: a PRNG key (or an int seed).
            targets: (T, d_c) or one target (d_c,); see `check_targets`.
            n: samples per target.
            refine: refine every sample by Levenberg-Marquardt to the exact target
                (`refine.refine`, joint limits respected).
            clamp: clip samples to the joint limits (always done when refining).
            num_iterations: LM iterations when refining.
            latent_scale: sample x = mu_k + s L_k eps with s = latent_scale
                (`AmortizedGMM.with_latent_scale`): 1 samples the model; larger values give
                more diverse seeds for refinement, further from a solution before it.

        Returns:
            float32 joint values (T, n, dof), or (n, dof) for a single (d_c,) target.

        Raises:
            ValueError, WorkspaceError: see `check_targets`; n < 1; latent_scale not a
                finite number > 0; a request that cannot fit in the device's free memory
                (`memory_estimate_bytes`: the message gives the size and the largest n that
                fits), refused before anything is allocated.
            FloatingPointError: a sampled value is NaN or infinite (never returned silently).
        """
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        if isinstance(num_iterations, bool) or int(num_iterations) < 0:
            raise ValueError(f"num_iterations must be an integer >= 0, got {num_iterations!r}")
        single = np.ndim(targets) == 1
        contexts = jnp.asarray(self.check_targets(targets), jnp.float32)
        self._check_fits_in_memory(contexts.shape[0], int(n), bool(refine))
        if isinstance(key, int | np.integer):
            key = jax.random.key(int(key))
        q = _sample(
            self.model.with_latent_scale(latent_scale),
            key,
            contexts,
            target=self.target,
            n=int(n),
            refine=bool(refine),
            clamp=bool(clamp),
            num_iterations=jnp.asarray(num_iterations, jnp.int32),
        )
        if not bool(jnp.all(jnp.isfinite(q))):  # never NaN silently (finite inputs and weights)
            raise FloatingPointError(
                f"{int(jnp.sum(~jnp.isfinite(q)))} of {q.size} sampled joint values are NaN or "
                "infinite; the model is numerically broken for these targets"
            )
        return q[0] if single else q

    def memory_estimate_bytes(self, num_targets: int, n: int, refine: bool) -> int:
        """An upper estimate of the memory one `sample` call needs (bytes): per sample, float32
        draws of every component, and for refinement the Jacobian, normal matrix and FK
        intermediates of Levenberg-Marquardt."""
        d, k = self.target.dim, int(np.size(self.model.active))
        per_sample = d * (k + 8) + ((6 * d + d * d + 64) * 4 if refine else 0)
        return 4 * int(num_targets) * int(n) * per_sample

    def _check_fits_in_memory(self, num_targets: int, n: int, refine: bool) -> None:
        """ValueError naming the size where `memory_estimate_bytes` exceeds the free memory."""
        need = self.memory_estimate_bytes(num_targets, n, refine)
        free = hardware.available_memory_bytes()
        if free is None or need <= free:
            return
        per_n = max(self.memory_estimate_bytes(num_targets, 1, refine), 1)
        raise ValueError(
            f"sampling n={n} for {num_targets} target(s){' with refinement' if refine else ''} "
            f"needs about {need / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB free: "
            f"ask for at most n={max(free // per_n, 1)} per call"
        )


@functools.partial(jax.jit, static_argnames=("target", "n", "refine", "clamp"))
def _sample(model, key, contexts, *, target, n, refine, clamp, num_iterations):
    """Sample (+ clamp) (+ refine) in one compiled call: -> (T, n, dof)."""
    q = target.joints(model.sample(key, contexts, n))
    robot = target.robot
    if clamp or refine:
        q = jnp.clip(q, jnp.asarray(robot.lower, q.dtype), jnp.asarray(robot.upper, q.dtype))
    if refine:
        q = target.refine_points(q, contexts[:, None], num_iterations)
    return q
