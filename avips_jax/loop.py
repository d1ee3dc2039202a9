"""The host-side training loop: jitted steps with logging, diagnostics, hooks and progress.

    state = run_loop(settings, target, state, step_fn, log_scalars=log_scalars, records=records)

`run_loop` serves aVIPS and the baselines alike (`avips_jax.fit` wires them up): it samples the
contexts of every step, runs the jitted `step_fn`, checks its metrics, applies an optional
host-side `adapt` (component adding / removal), logs scalars on the log schedule into a
`RunRecords`, shows a tqdm bar and calls the per-step hook with a `StepReport`. With a `mesh`,
contexts are sharded along its first axis and the state is replicated.
"""

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from avips_jax import distributed, divergence, gmm, networks, targets, train
from avips_jax.settings import Schedule, Settings
from avips_jax.streams import Stream

logger = logging.getLogger(__name__)

# (state, contexts (B, d_c), key) -> the model's scalars of a log step (Python numbers).
LogScalars = Callable[[Any, chex.Array, chex.PRNGKey], dict[str, float]]
# (state, contexts, key, step) -> (state, events): host-side changes after train step `step`
# (0-based), with the contexts and key of that step.
Adapt = Callable[[Any, chex.Array, chex.PRNGKey, int], tuple[Any, list[dict]]]


@dataclasses.dataclass
class RunRecords:
    """The loop's host-side bookkeeping: what a checkpoint needs beside the TrainState.

    Attributes:
        history: one dict of scalars per logged step ("step", "loss", "elbo", ...).
        events: component adding / removal events ("step", "event", "slot").
        wall_time_s: training wall time (seconds) of all sessions of the run so far.
    """

    history: list[dict] = dataclasses.field(default_factory=list)
    events: list[dict] = dataclasses.field(default_factory=list)
    wall_time_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return {
            "history": [dict(h) for h in self.history],
            "events": [dict(e) for e in self.events],
            "wall_time_s": float(self.wall_time_s),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunRecords":
        """Inverse of `to_json` (missing fields take their defaults)."""
        return cls(
            history=[dict(h) for h in data.get("history", [])],
            events=[dict(e) for e in data.get("events", [])],
            wall_time_s=float(data.get("wall_time_s", 0.0)),
        )


@dataclasses.dataclass(frozen=True)
class StepReport:
    """What the per-step hook `on_step` receives after every train step.

    Attributes:
        step: train steps taken so far (= int(state.step)).
        num_steps: schedule.num_steps.
        state: the TrainState after the step (and after component adding / removal).
        scalars: the logged scalars if this step was a log step, else None.
        records: the run's records up to this step (the loop keeps appending to them).
    """

    step: int
    num_steps: int
    state: train.TrainState
    scalars: dict | None
    records: RunRecords


# --------------------------------------------------------------------------------------------
# Devices
# --------------------------------------------------------------------------------------------


def shard_contexts(mesh: Mesh | None, contexts: chex.Array) -> chex.Array:
    """`contexts` (B, ...) sharded along the first axis of `mesh` (unchanged without a mesh).
    Across processes (`distributed.is_multiprocess()`) every process holds the same batch and
    places the rows its devices own (`distributed.global_array`)."""
    if mesh is None:
        return contexts
    sharding = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
    if distributed.is_multiprocess():
        return distributed.global_array(jax.device_get(contexts), sharding)
    return jax.device_put(contexts, sharding)


def replicate(mesh: Mesh | None, tree: chex.ArrayTree) -> chex.ArrayTree:
    """`tree` replicated on every device of `mesh` (unchanged without a mesh); across processes,
    from the same value in every process."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec())
    if distributed.is_multiprocess():
        return jax.tree.map(
            lambda x: (
                x
                if getattr(x, "sharding", None) == sharding
                else distributed.global_array(jax.device_get(x), sharding)
            ),
            tree,
        )
    return jax.device_put(tree, sharding)


# --------------------------------------------------------------------------------------------
# Diagnostics and logged scalars
# --------------------------------------------------------------------------------------------


def make_diagnostics(
    schedule: Schedule, module: networks.ConditionalGMM, target: targets.Target
) -> Callable[[train.TrainState, chex.Array, chex.PRNGKey], dict[str, chex.Array]]:
    """Jitted `(state, contexts (B, d_c), key) -> scalars` of the current model, for logging.

    Draws `schedule.log_samples` samples per context and returns the mean entropy estimate
    "entropy" (nats) and, for robot targets, the mean "position_error_mm" of the samples.
    """
    n = schedule.log_samples
    is_robot = isinstance(target, targets.RobotTarget)

    def diagnostics(state, contexts, key):
        params = module.apply(state.variables, contexts)
        x, _ = gmm.sample(params, state.active, key, n)  # (n, B, d)
        x = jax.lax.stop_gradient(x)
        out = {"entropy": -jnp.mean(gmm.log_prob(params, state.active, x))}
        if is_robot:
            c = jnp.broadcast_to(contexts, (n, *contexts.shape))
            out["position_error_mm"] = 1000.0 * jnp.mean(target.position_error(x, c))
        return out

    return jax.jit(diagnostics)


def make_model_diagnostics(schedule: Schedule, model_fn, target: targets.Target):
    """Jitted `(state, contexts, key) -> scalars` for any model built by `model_fn(state)`:
    "position_error_mm" (robot targets) and "entropy" (models with a density; from
    `sample_and_log_prob` where the model samples at another temperature than its density).
    `schedule.log_samples` samples per context.
    """
    n = schedule.log_samples
    is_robot = isinstance(target, targets.RobotTarget)

    def diagnostics(state, contexts, key):
        model = model_fn(state)
        out = {}
        if model.has_density and not model.samples_follow_density:
            x, log_q = model.sample_and_log_prob(key, contexts, n)
            out["entropy"] = -jnp.mean(log_q)
        else:
            x = model.sample(key, contexts, n)
            if model.has_density:
                out["entropy"] = -jnp.mean(model.log_prob(x, contexts))
        if is_robot:
            out["position_error_mm"] = 1000.0 * jnp.mean(
                target.position_error(x, contexts[:, None])
            )
        return out

    return jax.jit(diagnostics)


def avips_log_scalars(
    schedule: Schedule, module: networks.ConditionalGMM, target: targets.Target
) -> LogScalars:
    """The aVIPS model's scalars of a log step: `make_diagnostics`, the trust-region bounds
    ("eps_mean_mean", ..., "eps_cov_max" over the active slots), "num_active" and, while the
    target is annealed, "target_beta" (`train.target_beta` at the logged state's step).
    The step's own "elbo" is against the tempered target while it is annealed."""
    diagnostics = make_diagnostics(schedule, module, target)
    anneal = (schedule.anneal_steps, schedule.anneal_start)

    def log_scalars(state, contexts, key):
        out = _scalars(diagnostics(state, contexts, key)) | _trust_region_scalars(state)
        out["num_active"] = int(jnp.sum(state.active))
        if anneal[0] > 0:
            out["target_beta"] = float(train.target_beta(state.step, *anneal))
        return out

    return log_scalars


def model_log_scalars(schedule: Schedule, model_fn, target: targets.Target) -> LogScalars:
    """A baseline model's scalars of a log step: `make_model_diagnostics`."""
    diagnostics = make_model_diagnostics(schedule, model_fn, target)
    return lambda state, contexts, key: _scalars(diagnostics(state, contexts, key))


def _scalars(metrics: dict) -> dict[str, float]:
    """The 0-d entries of `metrics` as Python floats."""
    return {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0}


def _trust_region_scalars(state: train.TrainState) -> dict[str, float]:
    """Mean / min / max of the per-slot bounds over the active slots."""
    tr, active = jax.device_get((state.trust_region, state.active))
    out = {}
    for name in ("eps_mean", "eps_cov"):
        values = np.asarray(getattr(tr, name))[np.asarray(active)]
        if values.size:
            out |= {
                f"{name}_mean": float(values.mean()),
                f"{name}_min": float(values.min()),
                f"{name}_max": float(values.max()),
            }
    return out


class _Clock:
    """Wall-clock bookkeeping of one training session (which may continue an earlier run)."""

    def __init__(self, first_step: int, wall_offset: float):
        self.first_step, self.wall_offset = first_step, wall_offset
        self.start = self.last = time.perf_counter()
        self.last_step = first_step

    def wall_time(self) -> float:
        """Training wall time of the run so far, earlier sessions included (s)."""
        return self.wall_offset + time.perf_counter() - self.start

    def lap(self, step: int) -> dict[str, float]:
        """Rates at `step` steps done: this session's steps/s, the mean step time since the last
        lap (ms; compilation included) and the run's wall time."""
        now = time.perf_counter()
        out = {
            "steps_per_s": (step - self.first_step) / (now - self.start),
            "step_time_ms": 1000.0 * (now - self.last) / (step - self.last_step),
            "wall_time_s": self.wall_offset + now - self.start,
        }
        self.last, self.last_step = now, step
        return out


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def run_loop(
    settings: Settings,
    target: targets.Target,
    state: Any,
    step_fn: Callable[[Any, chex.Array], tuple[Any, dict]],
    *,
    log_scalars: LogScalars,
    records: RunRecords,
    adapt: Adapt | None = None,
    mesh: Mesh | None = None,
    progress: bool = True,
    callback: Callable[[int, dict], None] | None = None,
    on_step: Callable[[StepReport], None] | None = None,
) -> Any:
    """Runs `step_fn` from step int(state.step) to schedule.num_steps; returns the state.

    Contexts of step t come from fold_in(fold_in(PRNGKey(seed), Stream.CONTEXTS), t)
    (`avips_jax.streams`), so resuming at step t
    continues the uninterrupted run exactly.

    Args:
        settings: the run's settings (schedule: batch_contexts, num_steps, log_every; seed;
            method, the bar's label).
        target: samples the contexts; its name appears in errors.
        state: the state to continue from (any pytree with a scalar `step`).
        step_fn: jitted `(state, contexts) -> (state, metrics)`; metrics may hold
            "contexts_finite" and "skipped" (`divergence.check_step_flags`).
        log_scalars: the model's scalars of a log step (e.g. `avips_log_scalars`).
        records: appended to (history, events) and updated (wall time) in place.
        adapt: optional host-side `(step, state, contexts, key) -> (state, events)` after every
            step (`step` 0-based); its events go to `records.events`.
        mesh: optional device mesh; contexts are sharded along its first axis.
        progress: show a tqdm bar with rate and ETA.
        callback: called as callback(step, scalars) at every logged step.
        on_step: called as on_step(StepReport) after every step.

    Raises:
        divergence.NonFiniteContextError: a sampled context is NaN or infinite (checked, with
            the other per-step flags, at the next log step: the steps in between were skipped
            updates).
        divergence.DivergenceError: at a log step, the state holds a non-finite value or the
            last `MAX_CONSECUTIVE_SKIPPED` or more updates were all skipped; `on_step` is not
            called for that step (so no checkpoint of it is written), the message names the step
            and the quantity.
    """
    t = settings.schedule
    sample_contexts = jax.jit(lambda key: target.sample_contexts(key, t.batch_contexts))
    loop_key = jax.random.fold_in(jax.random.PRNGKey(settings.seed), Stream.CONTEXTS)
    state = replicate(mesh, state)
    clock = _Clock(int(state.step), records.wall_time_s)
    bar = tqdm.tqdm(
        range(clock.first_step, t.num_steps),
        total=t.num_steps,
        initial=clock.first_step,
        disable=not progress,
        desc=settings.method,
        dynamic_ncols=True,
    )
    unchecked = []  # (step, device flags) since the last check: read on log steps only
    skipped_in_a_row = 0
    for step in bar:
        step_key = jax.random.fold_in(loop_key, step)
        if distributed.is_multiprocess():  # every input of a multi-process computation is global
            step_key = replicate(mesh, step_key)
        contexts = shard_contexts(mesh, sample_contexts(step_key))
        state, metrics = step_fn(state, contexts)
        unchecked.append((step, _step_flags(metrics)))
        log_step = (step + 1) % t.log_every == 0 or step + 1 == t.num_steps
        if log_step:
            skipped_in_a_row = divergence.check_step_flags(unchecked, target, skipped_in_a_row)
            unchecked.clear()
            divergence.check_finite_state(state, step + 1)
        if adapt is not None:
            state, events = adapt(state, contexts, step_key, step)
            records.events.extend(events)
        scalars = None
        if log_step:
            scalars = {"step": step + 1, **_scalars(metrics)}
            scalars |= log_scalars(state, contexts, jax.random.fold_in(step_key, Stream.LOG))
            scalars |= clock.lap(step + 1)
            records.history.append(scalars)
            _show(bar, scalars)
            if callback is not None:
                callback(step + 1, scalars)
        records.wall_time_s = clock.wall_time()
        if on_step is not None:
            on_step(StepReport(step + 1, t.num_steps, state, scalars, records))
    bar.close()
    return state


def _show(bar: tqdm.tqdm, scalars: dict) -> None:
    """ELBO, loss and the number of active components (where logged) on the progress bar."""
    shown = {k: f"{scalars[k]:.3g}" for k in ("elbo", "loss") if k in scalars}
    if "num_active" in scalars:
        shown["K"] = scalars["num_active"]
    bar.set_postfix(shown)


def _step_flags(metrics: dict) -> tuple:
    """(contexts_finite, skipped) of one step's metrics, left on the device."""
    return metrics.get("contexts_finite", True), metrics.get("skipped", 0)
