"""The training loop: jitted train steps plus, outside jit, component adding and removal.

    result = fit(config)                      # target from config.target
    result = fit(config, target=my_target)    # any `targets.Target`
    result.state, result.module, result.history

    # Resume from a saved state (and its records); checkpoint from a per-step hook:
    result = fit(config, initial_state=state, records=records, on_step=hook)

Randomness is derived from `config.seed` and the step index only: the contexts of step t use
fold_in(key, t) and every other draw comes from the state's own key, so a run is reproducible on
the same machine, and a run resumed from the state (and records) saved after step t continues
exactly as the uninterrupted run. With a `mesh`, contexts are sharded along its first axis (data
parallelism over contexts) and the state is replicated.
"""

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from avips_jax import adaptation, baselines, gmm, networks, targets, train
from avips_jax import model as model_lib
from avips_jax.config import validate_config

logger = logging.getLogger(__name__)


class NonFiniteContextError(ValueError):
    """A context of the batch is NaN or infinite."""


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
        num_steps: config.train.num_steps.
        state: the TrainState after the step (and after component adding / removal).
        scalars: the logged scalars if this step was a log step, else None.
        records: the run's records up to this step (the loop keeps appending to them).
    """

    step: int
    num_steps: int
    state: train.TrainState
    scalars: dict | None
    records: RunRecords


@dataclasses.dataclass
class FitResult:
    """What `fit` returns.

    Attributes:
        state: the final TrainState.
        module: the network (apply with state.variables).
        target: the target trained on.
        history: one dict of scalars per logged step ("step", "loss", "elbo", ...).
        events: component adding / removal events ("step", "event", "slot").
        wall_time_s: training wall time of the whole run (all sessions), seconds.
        model: the trained model (`model.AmortizedGMM`, or a baseline's model), with
            `sample(key, contexts, n)` and, where it has a density, `log_prob`.
    """

    state: Any
    module: networks.ConditionalGMM | None
    target: targets.Target
    history: list[dict]
    events: list[dict]
    wall_time_s: float = 0.0
    model: Any = None


def build(config: ml_collections.ConfigDict, target: targets.Target | None = None):
    """Target, module, optimiser, initial state and the jitted steps of a run."""
    validate_config(config)
    if target is None:
        target = targets.make_target(config.target.name, **config.target.kwargs.to_dict())
    module = train.make_model(config, target)
    optimizer = train.make_optimizer(config)
    state = train.create_train_state(
        config, module, target, optimizer, jax.random.PRNGKey(config.seed)
    )
    step_fn = train.make_train_step(config, module, target, optimizer)
    return target, module, optimizer, state, step_fn


def _scalars(metrics: dict) -> dict:
    return {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0}


def _shard(mesh: Mesh | None, contexts: chex.Array) -> chex.Array:
    if mesh is None:
        return contexts
    return jax.device_put(contexts, NamedSharding(mesh, PartitionSpec(mesh.axis_names[0])))


def _replicate(mesh: Mesh | None, tree):
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def make_diagnostics(
    config: ml_collections.ConfigDict, module: networks.ConditionalGMM, target: targets.Target
) -> Callable[[train.TrainState, chex.Array, chex.PRNGKey], dict[str, chex.Array]]:
    """Jitted `(state, contexts (B, d_c), key) -> scalars` of the current model, for logging.

    Draws `config.train.log_samples` samples per context and returns the mean entropy estimate
    "entropy" (nats) and, if the target has `position_error(x, c)` (metres), the mean
    "position_error_mm" of the samples.
    """
    n = config.train.log_samples
    position_error = getattr(target, "position_error", None)

    def diagnostics(state, contexts, key):
        params = module.apply(state.variables, contexts)
        x, _ = gmm.sample(params, state.active, key, n)  # (n, B, d)
        x = jax.lax.stop_gradient(x)
        out = {"entropy": -jnp.mean(gmm.log_prob(params, state.active, x))}
        if callable(position_error):
            c = jnp.broadcast_to(contexts, (n, *contexts.shape))
            out["position_error_mm"] = 1000.0 * jnp.mean(position_error(x, c))
        return out

    return jax.jit(diagnostics)


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


def _make_adapt(config, module, target) -> Callable:
    """`adapt(step, state, contexts, step_key) -> (state, new events)`: component removal and
    adding after train step index `step` (0-based), on their schedules."""
    t, cc = config.train, config.components
    add_fn = adaptation.make_add_step(config, module, target) if cc.add else None
    remove_fn = adaptation.make_remove_step(config, module, target) if cc.remove else None

    def adapt(step, state, contexts, step_key):
        events = []
        if remove_fn is not None and (step + 1) % cc.check_every == 0:
            merge = cc.merge_tolerance > 0 and step + 1 > cc.merge_after * t.num_steps
            state, removed = remove_fn(state, contexts, jax.random.fold_in(step_key, 11), merge)
            for slot in np.flatnonzero(np.asarray(removed)):
                events.append({"step": step + 1, "event": "removed", "slot": int(slot)})
        if add_fn is not None and (step + 1) % cc.add_every == 0:
            if step + 1 <= cc.add_until * t.num_steps:
                state, info = add_fn(state, contexts, jax.random.fold_in(step_key, 7))
                if bool(info["added"]):
                    events.append({"step": step + 1, "event": "added", "slot": int(info["slot"])})
        return state, events

    return adapt


def _check_initial_state(initial: train.TrainState, fresh: train.TrainState) -> None:
    """ValueError unless `initial` has the structure, shapes and dtypes of this config's state."""
    if jax.tree.structure(initial) != jax.tree.structure(fresh):
        raise ValueError("initial_state does not have the TrainState structure of this config")
    for path, a, b in zip(
        jax.tree_util.tree_flatten_with_path(fresh)[0],
        jax.tree.leaves(initial),
        jax.tree.leaves(fresh),
        strict=True,
    ):
        da, db = jnp.asarray(a).dtype, jnp.asarray(b).dtype
        if np.shape(a) != np.shape(b) or da != db:
            raise ValueError(
                f"initial_state{jax.tree_util.keystr(path[0])} has shape {np.shape(a)} {da}, "
                f"this config needs {np.shape(b)} {db}"
            )


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


def _logged_scalars(step: int, metrics: dict, state, diagnostics: dict, clock: _Clock) -> dict:
    """The scalars of a log step (`step` = steps done)."""
    scalars = {"step": step, **_scalars(metrics)}
    scalars |= {k: float(v) for k, v in diagnostics.items()}
    scalars |= _trust_region_scalars(state)
    scalars["num_active"] = int(jnp.sum(state.active))
    return scalars | clock.lap(step)


def fit(
    config: ml_collections.ConfigDict,
    *,
    target: targets.Target | None = None,
    mesh: Mesh | None = None,
    progress: bool = True,
    callback: Callable[[int, dict], None] | None = None,
    initial_state: train.TrainState | None = None,
    records: RunRecords | None = None,
    on_step: Callable[[StepReport], None] | None = None,
) -> FitResult:
    """Trains aVIPS (or the baseline `config.method` names) for config.train.num_steps steps (or
    the steps left after `initial_state`).

    Args:
        config: a config from `avips_jax.config.default_config()` (possibly overridden).
        target: the target; default `targets.make_target(config.target.name, **kwargs)`.
        mesh: optional device mesh; contexts are sharded along its first axis.
        progress: show a tqdm bar with rate and ETA.
        callback: called as callback(step, scalar_metrics) at every logged step.
        initial_state: resume from this state (e.g. `checkpoint.restore`d); the loop continues at
            step int(initial_state.step). Default: a fresh state from `config.seed`.
        records: the records saved with `initial_state` (history, events, wall time); appended to.
        on_step: called as on_step(StepReport) after every step (checkpointing, TensorBoard).

    Returns:
        A `FitResult`.

    Raises:
        NonFiniteContextError: if a sampled context is NaN or infinite.
        ValueError: if `initial_state` does not fit the config.
    """
    if baselines.is_baseline(config.method):
        return _fit_baseline(
            config, target, mesh, progress, callback, initial_state, records, on_step
        )
    target, module, _, state, step_fn = build(config, target)
    if initial_state is not None:
        _check_initial_state(initial_state, state)
        state = initial_state
    diagnostics = make_diagnostics(config, module, target)

    def log_step(step, metrics, state, contexts, key, clock):
        diag = diagnostics(state, contexts, key)
        return _logged_scalars(step, metrics, state, diag, clock)

    records = RunRecords() if records is None else records
    state = _run_loop(
        config,
        target,
        state,
        step_fn,
        _make_adapt(config, module, target),
        log_step,
        mesh=mesh,
        progress=progress,
        callback=callback,
        records=records,
        on_step=on_step,
    )
    return FitResult(
        state=state,
        module=module,
        target=target,
        history=records.history,
        events=records.events,
        wall_time_s=records.wall_time_s,
        model=model_lib.AmortizedGMM.from_train_state(state, module, target.context_dim),
    )


def _fit_baseline(config, target, mesh, progress, callback, initial_state, records, on_step):
    """`fit` for a baseline trainer (`avips_jax.baselines`): same loop, no adding/removal."""
    validate_config(config)
    if target is None:
        target = targets.make_target(config.target.name, **config.target.kwargs.to_dict())
    trainer = baselines.make_trainer(config, target)
    state = trainer.init(jax.random.PRNGKey(config.seed))
    if initial_state is not None:
        _check_initial_state(initial_state, state)
        state = initial_state
    diagnostics = make_model_diagnostics(config, trainer.model, target)

    def log_step(step, metrics, state, contexts, key, clock):
        scalars = {"step": step, **_scalars(metrics)}
        scalars |= {k: float(v) for k, v in diagnostics(state, contexts, key).items()}
        return scalars | clock.lap(step)

    records = RunRecords() if records is None else records
    state = _run_loop(
        config,
        target,
        state,
        trainer.step,
        lambda step, state, contexts, key: (state, []),
        log_step,
        mesh=mesh,
        progress=progress,
        callback=callback,
        records=records,
        on_step=on_step,
    )
    return FitResult(
        state=state,
        module=None,
        target=target,
        history=records.history,
        events=records.events,
        wall_time_s=records.wall_time_s,
        model=trainer.model(state),
    )


def make_model_diagnostics(config, model_fn, target: targets.Target):
    """Jitted `(state, contexts, key) -> scalars` for any model built by `model_fn(state)`:
    "position_error_mm" (targets with `position_error`) and "entropy" (models with a density;
    from `sample_and_log_prob` where the model samples at another temperature than its density).
    """
    n = config.train.log_samples
    position_error = getattr(target, "position_error", None)

    def diagnostics(state, contexts, key):
        model = model_fn(state)
        out = {}
        if hasattr(model, "sample_and_log_prob"):
            x, log_q = model.sample_and_log_prob(key, contexts, n)
            out["entropy"] = -jnp.mean(log_q)
        else:
            x = model.sample(key, contexts, n)
            if getattr(model, "has_density", False):
                out["entropy"] = -jnp.mean(model.log_prob(x, contexts))
        if callable(position_error):
            out["position_error_mm"] = 1000.0 * jnp.mean(position_error(x, contexts[:, None]))
        return out

    return jax.jit(diagnostics)


def _run_loop(
    config, target, state, step_fn, adapt, log_step, *, mesh, progress, callback, records, on_step
):
    """The training loop shared by aVIPS and the baselines; returns the final state.

    Contexts of step t come from fold_in(PRNGKey(seed) + 1, t), so resuming at step t continues
    the uninterrupted run exactly. `adapt(step, state, contexts, key) -> (state, events)` runs
    after every step; `log_step(...)` gives the scalars of a log step.
    """
    t = config.train
    sample_contexts = jax.jit(lambda key: target.sample_contexts(key, t.batch_contexts))
    loop_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
    state = _replicate(mesh, state)
    clock = _Clock(int(state.step), records.wall_time_s)
    bar = tqdm.tqdm(
        range(clock.first_step, t.num_steps),
        total=t.num_steps,
        initial=clock.first_step,
        disable=not progress,
        desc=config.method,
        dynamic_ncols=True,
    )
    for step in bar:
        step_key = jax.random.fold_in(loop_key, step)
        contexts = _shard(mesh, sample_contexts(step_key))
        state, metrics = step_fn(state, contexts)
        _check_step(metrics, step, target)
        state, events = adapt(step, state, contexts, step_key)
        records.events.extend(events)
        scalars = None
        if (step + 1) % t.log_every == 0 or step + 1 == t.num_steps:
            scalars = log_step(
                step + 1, metrics, state, contexts, jax.random.fold_in(step_key, 13), clock
            )
            records.history.append(scalars)
            shown = {k: f"{scalars[k]:.3g}" for k in ("elbo", "loss") if k in scalars}
            if "num_active" in scalars:
                shown["K"] = scalars["num_active"]
            bar.set_postfix(shown)
            if callback is not None:
                callback(step + 1, scalars)
        records.wall_time_s = clock.wall_time()
        if on_step is not None:
            on_step(StepReport(step + 1, t.num_steps, state, scalars, records))
    bar.close()
    return state


def _check_step(metrics: dict, step: int, target: targets.Target) -> None:
    """Raises for a non-finite context batch; warns about a skipped (non-finite) update."""
    contexts_finite, skipped = jax.device_get(
        (metrics.get("contexts_finite", True), metrics.get("skipped", 0))
    )
    if not contexts_finite:
        raise NonFiniteContextError(
            f"step {step}: the context batch contains NaN or inf values "
            f"(target {target.name!r}); fix the context source."
        )
    if skipped:
        logger.warning("step %d skipped: non-finite loss, gradient or target", step + 1)
