"""The network of the flow baseline: a conditional Glow-style affine coupling flow (IKFlow's
architecture) as a flax module assembled from distrax bijectors.

    x = box(f_L(... f_1(z; c) ...; c)),  z ~ N(0, s^2 I_d)

Every block f_l = (coupling on the first half | second half) o (coupling on the second half |
first half) o (fixed random permutation), as FrEIA's `PermuteRandom` + `GLOWCouplingBlock` that
IKFlow stacks. Each coupling is an elementwise affine map y2 = x2 * exp(a) + b whose (b, a) come
from an MLP of (x1, c); the raw log-scale is soft-clamped, a = clamp * tanh(raw / clamp), so
that no coupling can scale by more than exp(+-clamp). The last layer of every MLP starts at zero:
the untrained flow is the identity up to the permutations, x = box(P z), whose density equals
that of box(z) (the base is isotropic). `box` is the fixed affine map from the latent
unit scale to the joint box, q = mid + half_range * y; its log-determinant is included, so
`log_prob` is a density in x (joint) space.
"""

from collections.abc import Sequence

import chex
import distrax
import flax.linen as nn
import jax.numpy as jnp
import numpy as np


class Permute(distrax.Bijector):
    """A fixed permutation of the last axis: y = x[..., perm] (volume preserving)."""

    def __init__(self, permutation: Sequence[int]):
        super().__init__(event_ndims_in=1, is_constant_jacobian=True)
        self._perm = np.asarray(permutation, dtype=np.int32)
        if sorted(self._perm.tolist()) != list(range(len(self._perm))):
            raise ValueError(f"not a permutation of 0..{len(self._perm) - 1}: {permutation}")
        self._inverse = np.argsort(self._perm)

    def forward_and_log_det(self, x: chex.Array) -> tuple[chex.Array, chex.Array]:
        return x[..., self._perm], jnp.zeros(x.shape[:-1], x.dtype)

    def inverse_and_log_det(self, y: chex.Array) -> tuple[chex.Array, chex.Array]:
        return y[..., self._inverse], jnp.zeros(y.shape[:-1], y.dtype)


class CouplingNet(nn.Module):
    """MLP (x1, c) -> (shift, raw log-scale) of one coupling, LeakyReLU, zero-initialised output.

    Attributes:
        hidden: widths of the hidden layers.
        out_dim: 2 * (number of transformed coordinates).
        negative_slope: LeakyReLU slope.
    """

    hidden: tuple[int, ...]
    out_dim: int
    negative_slope: float = 0.01

    @nn.compact
    def __call__(self, h: chex.Array) -> chex.Array:
        for width in self.hidden:
            h = nn.leaky_relu(nn.Dense(width)(h), self.negative_slope)
        return nn.Dense(self.out_dim, kernel_init=nn.initializers.zeros)(h)


class ConditionalFlow(nn.Module):
    """Conditional affine coupling flow q(x | cond) over R^d, d >= 2.

    Attributes:
        dim: d.
        hidden: coefficient-net hidden widths.
        permutations: one permutation of range(d) per block (static; its length = L blocks).
        mid, half_range: (d,) tuples, the box map x = mid + half_range * y.
        scale_clamp: bound on each coupling's |log-scale|.
        negative_slope: LeakyReLU slope of the coefficient nets.

    `cond` (N, d_cond) is the network's whole conditioning input (the context, plus the SoftFlow
    noise level where used); x, z are (N, d) (or (S, N, d): cond broadcasts against the leading
    axes of the points).
    """

    dim: int
    hidden: tuple[int, ...]
    permutations: tuple[tuple[int, ...], ...]
    mid: tuple[float, ...]
    half_range: tuple[float, ...]
    scale_clamp: float = 2.0
    negative_slope: float = 0.01

    def setup(self):
        split = self.dim // 2
        # Coupling 2l transforms x[split:] (size d - split), coupling 2l+1 transforms x[:split].
        sizes = [self.dim - split, split] * len(self.permutations)
        self.nets = [
            CouplingNet(self.hidden, 2 * size, self.negative_slope, name=f"coupling_{i}")
            for i, size in enumerate(sizes)
        ]

    def bijector(self, cond: chex.Array) -> distrax.Bijector:
        """The map z -> x for the conditioning input cond (N, d_cond), as a distrax.Chain."""
        split = self.dim // 2
        layers = []  # in the order they act on z
        for block, perm in enumerate(self.permutations):
            layers.append(Permute(perm))
            for swap in (False, True):
                net = self.nets[2 * block + int(swap)]
                layers.append(
                    distrax.SplitCoupling(
                        split_index=split,
                        event_ndims=1,
                        conditioner=self._conditioner(net, cond),
                        bijector=self._affine,
                        swap=swap,
                    )
                )
        box = distrax.ScalarAffine(
            shift=jnp.asarray(self.mid, cond.dtype), scale=jnp.asarray(self.half_range, cond.dtype)
        )
        layers.append(distrax.Block(box, 1))
        return distrax.Chain(layers[::-1])  # distrax.Chain applies its last element first

    @staticmethod
    def _conditioner(net: CouplingNet, cond: chex.Array):
        def conditioner(x1: chex.Array) -> chex.Array:
            c = jnp.broadcast_to(cond, x1.shape[:-1] + cond.shape[-1:])
            return net(jnp.concatenate([x1, c], axis=-1))

        return conditioner

    def _affine(self, params: chex.Array) -> distrax.Bijector:
        shift, raw = jnp.split(params, 2, axis=-1)
        log_scale = self.scale_clamp * jnp.tanh(raw / self.scale_clamp)
        return distrax.ScalarAffine(shift=shift, log_scale=log_scale)

    def distribution(self, cond: chex.Array, latent_scale=1.0) -> distrax.Transformed:
        """The flow with base N(0, latent_scale^2 I) for cond (N, d_cond): batch (N,), event (d,).

        Only latent_scale = 1 is the model's density q(x | c); other scales are the usual
        'temperature' trick (IKFlow samples at 0.75) and give a different distribution.
        """
        chex.assert_rank(cond, 2)
        shape = (cond.shape[0], self.dim)
        base = distrax.MultivariateNormalDiag(
            jnp.zeros(shape, cond.dtype), jnp.full(shape, latent_scale, cond.dtype)
        )
        return distrax.Transformed(base, self.bijector(cond))

    def log_prob(self, x: chex.Array, cond: chex.Array) -> chex.Array:
        """log q(x | cond) at latent scale 1: x (N, d), cond (N, d_cond) -> (N,)."""
        return self.distribution(cond).log_prob(x)

    def sample_and_log_prob(
        self, key: chex.PRNGKey, cond: chex.Array, latent_scale=1.0
    ) -> tuple[chex.Array, chex.Array]:
        """One reparameterised sample per row of cond (N, d_cond) and its log-density under the
        flow with base scale `latent_scale`: -> x (N, d), log_q (N,)."""
        return self.distribution(cond, latent_scale).sample_and_log_prob(seed=key)

    def forward_and_log_det(self, z: chex.Array, cond: chex.Array):
        """x = f(z; cond) and log|det df/dz|: z (N, d) -> (N, d), (N,)."""
        return self.bijector(cond).forward_and_log_det(z)

    def inverse_and_log_det(self, x: chex.Array, cond: chex.Array):
        """z = f^-1(x; cond) and log|det df^-1/dx|: x (N, d) -> (N, d), (N,)."""
        return self.bijector(cond).inverse_and_log_det(x)

    def __call__(self, x: chex.Array, cond: chex.Array) -> chex.Array:
        return self.log_prob(x, cond)


def random_permutations(dim: int, num_blocks: int, seed: int) -> tuple[tuple[int, ...], ...]:
    """num_blocks fixed random permutations of range(dim) (numpy, seeded; static)."""
    rng = np.random.default_rng(seed)
    return tuple(tuple(int(i) for i in rng.permutation(dim)) for _ in range(num_blocks))
