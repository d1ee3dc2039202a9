"""The trained flow baseline as one object: sample (at a latent scale) and evaluate the density.

model = trainer.model(state)                 # see flow.make_trainer
x = model.sample(key, contexts, n)           # (T, n, d), base N(0, latent_scale^2 I)
logq = model.log_prob(x, contexts)           # (T, n), the flow's density (scale 1)
"""

import functools
from typing import Any, ClassVar

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np

from avips_jax import inputs, sampling_model
from avips_jax.baselines import flow_layers as layers


@flax.struct.dataclass
class FlowModel(sampling_model.SamplingModel):
    """A trained conditional flow q(x | c).

    `log_prob` is the flow's density (latent scale 1). `sample` draws from the flow with base
    N(0, latent_scale^2 I) (IKFlow's trick: 0.75 by default, trading diversity for accuracy);
    for latent_scale != 1 the samples do NOT follow `log_prob`. `sample_and_log_prob` draws at
    scale 1 with matching densities (for ELBO estimates).

    Attributes:
        module: the flax flow (static).
        params: its parameters.
        context_dim: d_c (static).
        noise_input: whether the network takes the SoftFlow noise level (set to 0) after c.
        latent_scale: default base std of `sample`.
    """

    module: layers.ConditionalFlow = flax.struct.field(pytree_node=False)
    params: Any
    context_dim: int = flax.struct.field(pytree_node=False)
    noise_input: bool = flax.struct.field(pytree_node=False, default=False)
    latent_scale: float = flax.struct.field(pytree_node=False, default=0.75)

    has_density: ClassVar[bool] = True

    @property
    def dim(self) -> int:
        return self.module.dim

    @property
    def num_parameters(self) -> int:
        return int(sum(np.size(p) for p in jax.tree.leaves(self.params)))

    def check_contexts(self, contexts: chex.Array) -> jax.Array:
        """contexts as a float array of shape (T, d_c); ValueError naming the shape otherwise."""
        return inputs.check_contexts(contexts, self.context_dim)

    def sample(
        self, key: chex.PRNGKey, contexts: chex.Array, n: int, latent_scale: float | None = None
    ) -> jax.Array:
        """n samples per context at `latent_scale` (default: the model's): (T, d_c) -> (T, n, d)."""
        scale = self.latent_scale if latent_scale is None else latent_scale
        if not float(scale) > 0:
            raise ValueError(f"latent_scale must be > 0, got {scale}")
        contexts = self.check_contexts(contexts)
        return _sample(self, key, contexts, _check_n(n), jnp.asarray(scale, contexts.dtype))[0]

    @property
    def samples_follow_density(self) -> bool:
        return self.latent_scale == 1.0

    def sample_and_log_prob(self, key: chex.PRNGKey, contexts: chex.Array, n: int):
        """n samples per context from the density itself (scale 1) and their log q:
        -> x (T, n, d), log_q (T, n)."""
        contexts = self.check_contexts(contexts)
        return _sample(self, key, contexts, _check_n(n), jnp.ones((), contexts.dtype))

    def log_prob(self, x: chex.Array, contexts: chex.Array) -> jax.Array:
        """log q(x | c) (latent scale 1): x (T, n, d), contexts (T, d_c) -> (T, n)."""
        contexts = self.check_contexts(contexts)
        return _log_prob(self, inputs.check_points(x, contexts, self.dim), contexts)


def _check_n(n: int) -> int:
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return int(n)


def conditioning(
    contexts: chex.Array, noise_input: bool, noise_level: chex.Array | None = None
) -> jax.Array:
    """The network's conditioning input: contexts (N, d_c), followed where `noise_input` by the
    SoftFlow noise level (N, 1) (zeros if None: sampling and evaluation) -> (N, d_c [+ 1])."""
    if not noise_input:
        return contexts
    if noise_level is None:
        noise_level = jnp.zeros(contexts.shape[:-1] + (1,), contexts.dtype)
    return jnp.concatenate([contexts, noise_level], axis=-1)


@functools.partial(jax.jit, static_argnums=3)
def _sample(model: FlowModel, key, contexts, n: int, scale):
    t = contexts.shape[0]
    cond = conditioning(jnp.repeat(contexts, n, axis=0), model.noise_input)  # row t * n + j
    x, log_q = model.module.apply(
        {"params": model.params},
        key,
        cond,
        scale,
        method=layers.ConditionalFlow.sample_and_log_prob,
    )
    return x.reshape(t, n, model.dim), log_q.reshape(t, n)


@jax.jit
def _log_prob(model: FlowModel, x, contexts):
    t, n, d = x.shape
    cond = conditioning(jnp.repeat(contexts, n, axis=0), model.noise_input)
    log_q = model.module.apply({"params": model.params}, x.reshape(t * n, d), cond)
    return log_q.reshape(t, n)
