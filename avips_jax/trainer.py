"""The interface every training method follows (aVIPS, the vanilla GMM and the baselines), so that
one loop, one checkpoint format and one evaluation serve them all.

    trainer = methods.make_trainer(config, target)        # METHODS[config.method]
    state = trainer.init(jax.random.PRNGKey(config.seed))
    for t in range(num_steps):
        contexts = target.sample_contexts(jax.random.fold_in(loop_key, t), batch)
        state, metrics = trainer.step(state, contexts)     # one jitted call (donates state)
        if trainer.adapt is not None:                      # aVIPS: add / remove components
            state, events = trainer.adapt(state, contexts, key_t, t)
    model = trainer.model(state)                          # a `sampling_model.SamplingModel`

The state is a flax.struct pytree holding everything that changes during training (saved whole
by `avips_jax.checkpoint`); its shapes, for restoring, are `jax.eval_shape(trainer.init, key)`.
A trainer's networks, optimiser and config are static and closed over.
"""

from collections.abc import Callable
from typing import Any

import chex
import flax

from avips_jax.sampling_model import SamplingModel

Metrics = dict[str, chex.Array]


@flax.struct.dataclass
class Trainer:
    """The pure functions of one training method.

    Attributes:
        init: PRNG key -> the state at step 0.
        step: (state, contexts (B, d_c)) -> (state, metrics); jitted, donates the state.
        model: state -> the trained model.
        log_scalars: (state, contexts, key) -> scalars added to the metrics of a log step (the
            model's diagnostics); None: none.
        adapt: (state, contexts, key, step) -> (state, events) after train step `step`
            (0-based; component adding and removal); None for methods with a fixed structure.
    """

    init: Callable[[chex.PRNGKey], Any] = flax.struct.field(pytree_node=False)
    step: Callable[[Any, chex.Array], tuple[Any, Metrics]] = flax.struct.field(pytree_node=False)
    model: Callable[[Any], SamplingModel] = flax.struct.field(pytree_node=False)
    log_scalars: Callable[[Any, chex.Array, chex.PRNGKey], dict] | None = flax.struct.field(
        pytree_node=False, default=None
    )
    adapt: Callable[[Any, chex.Array, chex.PRNGKey, int], tuple[Any, list[dict]]] | None = (
        flax.struct.field(pytree_node=False, default=None)
    )
