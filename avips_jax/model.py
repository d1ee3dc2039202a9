"""A trained conditional mixture as one object: sample, evaluate the density, read the weights.

    model = AmortizedGMM.from_train_state(state, module, context_dim)
    x = model.sample(key, contexts, n)        # (T, n, d), one jitted call
    logq = model.log_prob(x, contexts)        # (T, n)
    w = model.weights(contexts)               # (T, K), zero on inactive slots
    wide = model.with_latent_scale(1.5)       # samples x = mu + 1.5 L eps (a test-time knob)

It is a `sampling_model.SamplingModel`, the interface every model of the evaluation follows;
the weights, the active slots and the mixture parameters are its own.
"""

import functools
from typing import ClassVar

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np

from avips_jax import gmm, inputs, networks, sampling_model


@flax.struct.dataclass
class AmortizedGMM(sampling_model.SamplingModel):
    """Network + variables + active mask of a conditional GMM q(x | c).

    Attributes:
        module: the flax network (static).
        variables: {"params": ..., "slots": ...}.
        active: (K,) bool mask of the slots in use.
        context_dim: d_c (static).
        latent_scale: (static) std of the noise eps in x = mu_k + L_k eps used by `sample`;
            1 samples the density q itself, > 1 spreads every component wider along its own
            axes (more diverse seeds for refinement, fewer near a solution), < 1 narrower (like
            the flow's latent scale, IKFlow's "softness"). `log_prob` is always q's, at scale 1.
    """

    has_density: ClassVar[bool] = True

    module: networks.ConditionalGMM = flax.struct.field(pytree_node=False)
    variables: dict
    active: chex.Array
    context_dim: int = flax.struct.field(pytree_node=False)
    latent_scale: float = flax.struct.field(pytree_node=False, default=1.0)

    @classmethod
    def from_train_state(cls, state, module: networks.ConditionalGMM, context_dim: int):
        """The model of a `train.TrainState` (its current parameters and active mask)."""
        return cls(
            module=module,
            variables=state.variables,
            active=state.active,
            context_dim=int(context_dim),
        )

    def with_latent_scale(self, scale: float) -> "AmortizedGMM":
        """This model sampling at `scale` (see the class docstring); ValueError unless a finite
        number > 0."""
        scale = float(scale)
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"latent_scale must be a finite number > 0, got {scale}")
        return self.replace(latent_scale=scale)

    @property
    def dim(self) -> int:
        """d, the dimension of x."""
        return self.module.dim

    @property
    def num_parameters(self) -> int:
        """Number of trainable scalars (all slots, active or not)."""
        return int(sum(np.size(p) for p in jax.tree.leaves(self.variables["params"])))

    @property
    def num_active(self) -> int:
        return int(np.sum(np.asarray(self.active)))

    def check_contexts(self, contexts: chex.Array) -> jax.Array:
        """contexts as a float array of shape (T, d_c); ValueError naming the shape otherwise."""
        return inputs.check_contexts(contexts, self.context_dim)

    def gmm_params(self, contexts: chex.Array) -> gmm.GMMParams:
        """Mixture parameters for contexts (T, d_c): logits (T, K), means (T, K, d), chols."""
        return _apply(self, self.check_contexts(contexts))

    def sample(self, key: chex.PRNGKey, contexts: chex.Array, n: int) -> jax.Array:
        """n samples per context: contexts (T, d_c) -> (T, n, d)."""
        return self.sample_with_components(key, contexts, n)[0]

    def sample_with_components(self, key: chex.PRNGKey, contexts: chex.Array, n: int):
        """Samples and the slot each came from: -> x (T, n, d), ids (T, n) int32."""
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        return _sample(self, key, self.check_contexts(contexts), int(n))

    @property
    def samples_follow_density(self) -> bool:
        return self.latent_scale == 1.0

    def log_prob(self, x: chex.Array, contexts: chex.Array) -> jax.Array:
        """log q(x | c): x (T, n, d), contexts (T, d_c) -> (T, n)."""
        contexts = self.check_contexts(contexts)
        return _log_prob(self, inputs.check_points(x, contexts, self.dim), contexts)

    def sample_and_log_prob(self, key: chex.PRNGKey, contexts: chex.Array, n: int):
        """n draws of q itself (latent scale 1) and their log q: -> x (T, n, d), log_q (T, n)."""
        density = self.with_latent_scale(1.0)
        x = density.sample(key, contexts, n)
        return x, density.log_prob(x, contexts)

    def weights(self, contexts: chex.Array) -> jax.Array:
        """Component weights (T, K), exactly zero on inactive slots."""
        params = self.gmm_params(contexts)
        return jnp.exp(gmm.log_weights(params, self.active))


@jax.jit
def _apply(model: AmortizedGMM, contexts: jax.Array) -> gmm.GMMParams:
    return model.module.apply(model.variables, contexts)


@functools.partial(jax.jit, static_argnums=3)
def _sample(model: AmortizedGMM, key, contexts, n: int):
    params = model.module.apply(model.variables, contexts)
    if model.latent_scale != 1.0:
        params = params.replace(chols=params.chols * model.latent_scale)
    x, ids = gmm.sample(params, model.active, key, n)
    return jnp.swapaxes(x, 0, 1), jnp.swapaxes(ids, 0, 1)


@jax.jit
def _log_prob(model: AmortizedGMM, x, contexts):
    params = model.module.apply(model.variables, contexts)
    return jnp.swapaxes(gmm.log_prob(params, model.active, jnp.swapaxes(x, 0, 1)), 0, 1)
