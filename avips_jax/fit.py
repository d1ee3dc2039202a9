"""Training entry point: wires the trainer of `config.method` (`avips_jax.methods`) into the loop
of `avips_jax.loop`.

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

from avips_jax import loop, methods, networks, targets, train
from avips_jax import model as model_lib
from avips_jax.divergence import NonFiniteContextError
from avips_jax.loop import RunRecords, StepReport
from avips_jax.settings import Settings, as_settings
from avips_jax.trainer import Trainer

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


def build(config: ml_collections.ConfigDict | Settings, target: targets.Target | None = None):
    """Target, module, optimiser, initial state (from `config.seed`) and the jitted step of a
    conditional-GMM run (aVIPS or the vanilla GMM: `methods.make_gmm`)."""
    settings = as_settings(config)
    methods.check_method(settings)
    if target is None:
        target = targets.from_config(settings)
    gmm = methods.make_gmm(settings, target)
    state = gmm.init(jax.random.PRNGKey(settings.seed))
    return target, gmm.module, gmm.optimizer, state, gmm.step_fn


def fit(
    config: ml_collections.ConfigDict | Settings,
    *,
    target: targets.Target | None = None,
    trainer: Trainer | None = None,
    mesh: Mesh | None = None,
    progress: bool = True,
    callback: Callable[[int, dict], None] | None = None,
    initial_state: train.TrainState | None = None,
    records: RunRecords | None = None,
    on_step: Callable[[StepReport], None] | None = None,
) -> FitResult:
    """Trains the method `config.method` names (`methods.METHODS`) for config.train.num_steps
    steps (or the steps left after `initial_state`).

    Args:
        config: a config from `avips_jax.config.default_config()` (possibly overridden), or
            its `settings.Settings` (built once here otherwise and handed down).
        target: the target; default `targets.from_config(config)`.
        trainer: the method's trainer on `target` (`methods.make_trainer(config, target)`, the
            default), where the caller built it already (`run.train_and_checkpoint`).
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
    settings = as_settings(config)
    if target is None:
        if trainer is not None:
            raise ValueError("fit: a trainer needs the target it was built for (target=...)")
        target = targets.from_config(settings)
    if trainer is None:
        trainer = methods.make_trainer(settings, target)
    key = jax.random.PRNGKey(settings.seed)
    if initial_state is None:
        state = trainer.init(key)
    else:
        _check_initial_state(initial_state, jax.eval_shape(trainer.init, key))
        state = initial_state
    records = RunRecords() if records is None else records
    state = loop.run_loop(
        settings,
        target,
        state,
        trainer.step,
        log_scalars=trainer.log_scalars,
        records=records,
        adapt=trainer.adapt,
        mesh=mesh,
        progress=progress,
        callback=callback,
        on_step=on_step,
    )
    model = trainer.model(state)
    return FitResult(
        state=state,
        module=model.module if isinstance(model, model_lib.AmortizedGMM) else None,
        target=target,
        history=records.history,
        events=records.events,
        wall_time_s=records.wall_time_s,
        model=model,
    )


def _check_initial_state(initial: Any, fresh: Any) -> None:
    """ValueError unless `initial` has the structure, shapes and dtypes of `fresh`, the shapes
    (`jax.eval_shape`) of this config's state."""
    if jax.tree.structure(initial) != jax.tree.structure(fresh):
        raise ValueError("initial_state does not have the TrainState structure of this config")
    for path, a, b in zip(
        jax.tree_util.tree_flatten_with_path(fresh)[0],
        jax.tree.leaves(initial),
        jax.tree.leaves(fresh),
        strict=True,
    ):
        da, db = jnp.asarray(a).dtype, b.dtype  # b: a jax.ShapeDtypeStruct
        if np.shape(a) != tuple(b.shape) or da != db:
            raise ValueError(
                f"initial_state{jax.tree_util.keystr(path[0])} has shape {np.shape(a)} {da}, "
                f"this config needs {tuple(b.shape)} {db}"
            )
