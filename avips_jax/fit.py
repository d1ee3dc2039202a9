"""Training entry point: wires aVIPS (or a baseline) into the loop of `avips_jax.loop`.

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
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from avips_jax import adaptation, baselines, loop, networks, targets, train
from avips_jax import model as model_lib
from avips_jax.config import validate_config
from avips_jax.loop import NonFiniteContextError, RunRecords, StepReport

__all__ = ["FitResult", "NonFiniteContextError", "RunRecords", "StepReport", "build", "fit"]


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


@dataclasses.dataclass(frozen=True)
class _Method:
    """What the loop needs of one method (aVIPS or a baseline), plus how to build its model."""

    target: targets.Target
    module: networks.ConditionalGMM | None
    state: Any  # the fresh state from config.seed
    step_fn: Callable
    log_scalars: loop.LogScalars
    adapt: loop.Adapt | None
    make_model: Callable[[Any], Any]  # final state -> trained model


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
        method = _baseline_method(config, target)
    else:
        method = _avips_method(config, target)
    state = method.state
    if initial_state is not None:
        _check_initial_state(initial_state, state)
        state = initial_state
    records = RunRecords() if records is None else records
    state = loop.run_loop(
        config,
        method.target,
        state,
        method.step_fn,
        log_scalars=method.log_scalars,
        records=records,
        adapt=method.adapt,
        mesh=mesh,
        progress=progress,
        callback=callback,
        on_step=on_step,
    )
    return FitResult(
        state=state,
        module=method.module,
        target=method.target,
        history=records.history,
        events=records.events,
        wall_time_s=records.wall_time_s,
        model=method.make_model(state),
    )


def _avips_method(config: ml_collections.ConfigDict, target: targets.Target | None) -> _Method:
    """aVIPS: the train step of `avips_jax.train`, component adding / removal between steps."""
    target, module, _, state, step_fn = build(config, target)
    return _Method(
        target=target,
        module=module,
        state=state,
        step_fn=step_fn,
        log_scalars=loop.avips_log_scalars(config, module, target),
        adapt=adaptation.make_adapt(config, module, target),
        make_model=lambda s: model_lib.AmortizedGMM.from_train_state(s, module, target.context_dim),
    )


def _baseline_method(config: ml_collections.ConfigDict, target: targets.Target | None) -> _Method:
    """A baseline trainer (`avips_jax.baselines`): its own step, no adding / removal."""
    validate_config(config)
    if target is None:
        target = targets.make_target(config.target.name, **config.target.kwargs.to_dict())
    trainer = baselines.make_trainer(config, target)
    return _Method(
        target=target,
        module=None,
        state=trainer.init(jax.random.PRNGKey(config.seed)),
        step_fn=trainer.step,
        log_scalars=loop.model_log_scalars(config, trainer.model, target),
        adapt=None,
        make_model=trainer.model,
    )


def _check_initial_state(initial: Any, fresh: Any) -> None:
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
