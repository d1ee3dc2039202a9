"""What the baseline trainers share: their state and the guarded optimiser step. Each baseline's
`make_trainer` returns an `avips_jax.trainer.Trainer`, like aVIPS's (`avips_jax.methods`):

    trainer = make_trainer(config, target)        # e.g. baselines.flow.make_trainer
    state = trainer.init(jax.random.PRNGKey(config.seed))
    for t in range(num_steps):
        contexts = target.sample_contexts(jax.random.fold_in(loop_key, t), batch)
        state, metrics = trainer.step(state, contexts)   # one jitted call (donates state)
    model = trainer.model(state)                  # .sample(key, contexts (T, d_c), n) -> (T, n, d)
                                                  # .log_prob(x (T, n, d), contexts) -> (T, n)
                                                  #   (only where `model.has_density`)
                                                  # .num_parameters

`BaselineState` holds everything that changes during training (a flax.struct pytree, saved whole
by `avips_jax.checkpoint`); a trainer's networks, optimiser and config are static.
"""

from typing import Any

import chex
import flax
import jax.numpy as jnp
import optax

from avips_jax import pytree

Metrics = dict[str, chex.Array]


@flax.struct.dataclass
class BaselineState:
    """Training state of a baseline.

    Attributes:
        step: () int32 steps taken.
        params: trainable parameters (any pytree; e.g. {"generator": ..., "discriminator": ...}).
        opt_state: optax state(s) matching `params`.
        key: PRNG key for the next step.
        num_skipped: () int32 steps skipped because of non-finite loss or gradients.
    """

    step: chex.Array
    params: Any
    opt_state: Any
    key: chex.PRNGKey
    num_skipped: chex.Array


def initial_state(
    params, optimizer: optax.GradientTransformation, key: chex.PRNGKey
) -> BaselineState:
    """Step 0 of a baseline: `params`, a fresh optimiser state, no skipped steps."""
    return BaselineState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=optimizer.init(params),
        key=key,
        num_skipped=jnp.zeros((), jnp.int32),
    )


def guarded_update(
    state: BaselineState,
    optimizer: optax.GradientTransformation,
    grads,
    loss: chex.Array,
    contexts: chex.Array,
    next_key: chex.PRNGKey,
    extra_ok: chex.Array | bool = True,
) -> tuple[BaselineState, Metrics]:
    """One optimiser step that is skipped (parameters and optimiser state unchanged,
    `num_skipped` + 1) when the loss, a gradient or a context is not finite, or `extra_ok` is
    False. Returns the new state and the metrics every trainer reports: "loss", "grad_norm",
    "skipped", "contexts_finite"."""
    contexts_ok = jnp.all(jnp.isfinite(contexts))
    ok = jnp.isfinite(loss) & pytree.all_finite(grads) & contexts_ok & extra_ok
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(
        step=state.step + 1,
        params=pytree.select(ok, params, state.params),
        opt_state=pytree.select(ok, opt_state, state.opt_state),
        key=next_key,
        num_skipped=state.num_skipped + (~ok).astype(jnp.int32),
    )
    metrics = {
        "loss": loss,
        "grad_norm": optax.tree.norm(grads),
        "skipped": (~ok).astype(jnp.int32),
        "contexts_finite": contexts_ok,
    }
    return new_state, metrics
