"""The training loop: jitted train steps plus, outside jit, component adding and removal.

    result = fit(config)                      # target from config.target
    result = fit(config, target=my_target)    # any `targets.Target`
    result.state, result.module, result.history

Randomness is derived from `config.seed` only: the contexts of step t use fold_in(key, t), so a
run is reproducible on the same machine. With a `mesh`, contexts are sharded along its first axis
(data parallelism over contexts) and the state is replicated.
"""

import dataclasses
import logging
import time
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from avips_jax import adaptation, networks, targets, train
from avips_jax.config import validate_config

logger = logging.getLogger(__name__)


class NonFiniteContextError(ValueError):
    """A context of the batch is NaN or infinite."""


@dataclasses.dataclass
class FitResult:
    """What `fit` returns.

    Attributes:
        state: the final TrainState.
        module: the network (apply with state.variables).
        target: the target trained on.
        history: one dict of scalars per logged step ("step", "loss", "elbo", ...).
        events: component adding / removal events ("step", "event", "slot").
    """

    state: train.TrainState
    module: networks.ConditionalGMM
    target: targets.Target
    history: list[dict]
    events: list[dict]


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


def fit(
    config: ml_collections.ConfigDict,
    *,
    target: targets.Target | None = None,
    mesh: Mesh | None = None,
    progress: bool = True,
    callback: Callable[[int, dict], None] | None = None,
) -> FitResult:
    """Trains aVIPS for config.train.num_steps steps.

    Args:
        config: a config from `avips_jax.config.default_config()` (possibly overridden).
        target: the target; default `targets.make_target(config.target.name, **kwargs)`.
        mesh: optional device mesh; contexts are sharded along its first axis.
        progress: show a tqdm bar with rate and ETA.
        callback: called as callback(step, scalar_metrics) at every logged step.

    Returns:
        A `FitResult`.

    Raises:
        NonFiniteContextError: if a sampled context is NaN or infinite.
    """
    target, module, _, state, step_fn = build(config, target)
    t, cc = config.train, config.components
    add_fn = adaptation.make_add_step(config, module, target) if cc.add else None
    remove_fn = adaptation.make_remove_step(config, module, target) if cc.remove else None
    batch = t.batch_contexts
    sample_contexts = jax.jit(lambda key: target.sample_contexts(key, batch))
    loop_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
    state = _replicate(mesh, state)
    history, events = [], []
    bar = tqdm.trange(t.num_steps, disable=not progress, desc="aVIPS", dynamic_ncols=True)
    start = time.perf_counter()
    for step in bar:
        step_key = jax.random.fold_in(loop_key, step)
        contexts = _shard(mesh, sample_contexts(step_key))
        state, metrics = step_fn(state, contexts)
        contexts_finite, skipped = jax.device_get((metrics["contexts_finite"], metrics["skipped"]))
        if not contexts_finite:
            raise NonFiniteContextError(
                f"step {step}: the context batch contains NaN or inf values "
                f"(target {target.name!r}); fix the context source."
            )
        if skipped:
            logger.warning("step %d skipped: non-finite loss, gradient or target", step + 1)
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
        if (step + 1) % t.log_every == 0 or step + 1 == t.num_steps:
            scalars = {"step": step + 1, **_scalars(metrics)}
            scalars["num_active"] = int(jnp.sum(state.active))
            scalars["steps_per_s"] = (step + 1) / (time.perf_counter() - start)
            history.append(scalars)
            bar.set_postfix(elbo=f"{scalars['elbo']:.3f}", K=scalars["num_active"])
            if callback is not None:
                callback(step + 1, scalars)
    return FitResult(state=state, module=module, target=target, history=history, events=events)
