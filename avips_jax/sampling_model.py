"""What every trained model offers the evaluation, as one abstract base class.

    x = model.sample(key, contexts, n)                   # (T, n, d)
    x, ids = model.sample_with_components(key, contexts, n)   # ids (T, n) int32, or None
    if model.has_density:
        logq = model.log_prob(x, contexts)               # (T, n)
        if not model.samples_follow_density:             # e.g. the flow at latent scale 0.75
            x_q, logq_q = model.sample_and_log_prob(key, contexts, n)  # draws of q itself
    model.num_parameters                                 # trainable scalars

The aVIPS / vanilla GMM model (`avips_jax.model.AmortizedGMM`), the flow and the GAN ensemble
subclass it; code that needs more than this (the weights of a mixture) asks the concrete type
with `isinstance`.
"""

import abc
from typing import ClassVar

import chex
import jax


class SamplingModel(abc.ABC):
    """A trained conditional model q(x | c) that samples and maybe evaluates its density.

    Class flag `has_density`: whether `log_prob` (and `sample_and_log_prob`) exist.
    """

    has_density: ClassVar[bool] = False

    context_dim: int

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """d, the dimension of x."""

    @property
    @abc.abstractmethod
    def num_parameters(self) -> int:
        """Number of trainable scalars."""

    @abc.abstractmethod
    def sample(self, key: chex.PRNGKey, contexts: chex.Array, n: int) -> jax.Array:
        """n samples per context: contexts (T, d_c) -> (T, n, d)."""

    def sample_with_components(
        self, key: chex.PRNGKey, contexts: chex.Array, n: int
    ) -> tuple[jax.Array, jax.Array | None]:
        """`sample` and, for models made of parts (mixture components, ensemble members), the
        part each sample came from: -> x (T, n, d), ids (T, n) int32 or None."""
        return self.sample(key, contexts, n), None

    @property
    def samples_follow_density(self) -> bool:
        """Whether `sample` draws from the density `log_prob` evaluates (False for a model
        sampling at another temperature, and for models without a density)."""
        return self.has_density

    def log_prob(self, x: chex.Array, contexts: chex.Array) -> jax.Array:
        """log q(x | c): x (T, n, d), contexts (T, d_c) -> (T, n); only where `has_density`."""
        raise NotImplementedError(f"{type(self).__name__} has no density (has_density is False)")

    def sample_and_log_prob(
        self, key: chex.PRNGKey, contexts: chex.Array, n: int
    ) -> tuple[jax.Array, jax.Array]:
        """n draws of the density itself and their log q: -> x (T, n, d), log_q (T, n); only
        where `has_density`. Override where `sample` does not follow the density."""
        x = self.sample(key, contexts, n)
        return x, self.log_prob(x, contexts)
