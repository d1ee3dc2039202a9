"""Normalised conditional toy targets: moving GMM, spiral GMM, banana mixture and funnel.

All are normalised (log Z(c) = 0) and have exact samplers, so -ELBO = KL(q || p) exactly.
`spiral_gmm`, `banana` and `funnel` follow the thesis targets (docs/math.md §8.4);
`moving_gmm` is our easy test target.
"""

import abc
import dataclasses
import math
from typing import ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np

from avips_jax.targets import base

_LOG_2PI = math.log(2.0 * math.pi)


def _mvn_log_prob(x: chex.Array, means: chex.Array, chols: chex.Array) -> chex.Array:
    """log N(x; mean, L L^T): x (..., d), means (..., d), chols (..., d, d) broadcast -> (...)."""
    diff = x - means
    # Forward substitution, unrolled over the (small, static) dimension: much faster on CPU than
    # a batched triangular-solve call for many tiny matrices.
    z = []
    for i in range(x.shape[-1]):
        acc = diff[..., i]
        for j, z_j in enumerate(z):
            acc = acc - chols[..., i, j] * z_j
        z.append(acc / chols[..., i, i])
    z = jnp.stack(z, axis=-1)
    log_det = jnp.sum(jnp.log(jnp.abs(jnp.diagonal(chols, axis1=-2, axis2=-1))), axis=-1)
    return -0.5 * jnp.sum(z**2, axis=-1) - log_det - 0.5 * x.shape[-1] * _LOG_2PI


def _alternating_logits(c_even: chex.Array, c_odd: chex.Array, k: int) -> chex.Array:
    """Thesis weight logits: sin((i+1) c_even) for even i, cos((i+1) c_odd) for odd i -> (k,)."""
    i = jnp.arange(k)
    f = (i + 1).astype(c_even.dtype)
    return jnp.where(i % 2 == 0, jnp.sin(f * c_even), jnp.cos(f * c_odd))


def _cube_contexts(key: chex.PRNGKey, n: int, dim: int, bound: float) -> chex.Array:
    return base.uniform_box(key, n, np.full(dim, -bound), np.full(dim, bound))


class _SquareBox2D:
    """lower/upper = -/+ `_half_width` in both coordinates of a 2-D target."""

    @property
    def lower(self) -> np.ndarray:
        return np.full(2, -self._half_width)

    @property
    def upper(self) -> np.ndarray:
        return np.full(2, self._half_width)


class _NormalizedTarget(base.Target):
    """A target with log Z(c) = 0 and an exact sampler."""

    is_normalized: ClassVar[bool] = True
    has_sampler: ClassVar[bool] = True

    def log_normalizer(self, c: chex.Array) -> chex.Array:
        """log Z(c) = 0 for every context: c (..., d_c) -> zeros (...)."""
        c = jnp.asarray(c)
        base.check_trailing(c, self.context_dim, "c", self.name)
        return jnp.zeros(c.shape[:-1], jnp.promote_types(c.dtype, jnp.float32))


class _ConditionalGMM(_NormalizedTarget):
    """A Gaussian mixture whose weights, means and Cholesky factors are functions of c.

    `modes` are the component means (the mixture's modes when the components are well separated),
    `mode_stds` the square root of each component covariance's smallest eigenvalue, and
    `mode_weights` the mixture weights.
    """

    has_modes: ClassVar[bool] = True

    @abc.abstractmethod
    def _params_single(self, c: chex.Array) -> tuple[chex.Array, chex.Array, chex.Array]:
        """One context c (d_c,) -> log-weights (M,), means (M, d), Cholesky factors (M, d, d)."""

    def component_params(self, c: chex.Array) -> tuple[chex.Array, chex.Array, chex.Array]:
        """Mixture parameters for contexts c (B, d_c).

        Returns:
          log-weights (B, M), means (B, M, d), lower Cholesky factors (B, M, d, d).
        """
        c = self.check_contexts(c)
        return jax.vmap(self._params_single)(c.astype(jnp.promote_types(c.dtype, jnp.float32)))

    def _log_prob_single(self, x: chex.Array, c: chex.Array) -> chex.Array:
        log_w, means, chols = self._params_single(c)
        return jax.nn.logsumexp(log_w + _mvn_log_prob(x, means, chols))

    def _log_prob_batched(self, x: chex.Array, c: chex.Array) -> chex.Array:
        # Mixture parameters once per context, broadcast over the points of that context.
        c_batch = c.shape[:-1]
        log_w, means, chols = jax.vmap(self._params_single)(c.reshape(-1, self.context_dim))
        log_w = log_w.reshape(c_batch + log_w.shape[-1:])
        means = means.reshape(c_batch + means.shape[-2:])
        chols = chols.reshape(c_batch + chols.shape[-3:])
        return jax.nn.logsumexp(log_w + _mvn_log_prob(x[..., None, :], means, chols), axis=-1)

    def sample(self, key: chex.PRNGKey, c: chex.Array, n: int) -> chex.Array:
        """Exact ancestral samples: contexts c (B, d_c) -> (n, B, d)."""
        log_w, means, chols = self.component_params(c)
        num_ctx = means.shape[0]
        key_k, key_eps = jax.random.split(key)
        k = jax.random.categorical(key_k, log_w, axis=-1, shape=(n, num_ctx))
        rows = jnp.arange(num_ctx)[None, :]
        eps = jax.random.normal(key_eps, (n, num_ctx, self.dim), means.dtype)
        return means[rows, k] + jnp.einsum("nbij,nbj->nbi", chols[rows, k], eps)

    def modes(self, c: chex.Array) -> chex.Array:
        """Component means, (B, M, d)."""
        return self.component_params(c)[1]

    def mode_stds(self, c: chex.Array) -> chex.Array:
        """sqrt of the smallest eigenvalue of each component covariance, (B, M)."""
        chols = self.component_params(c)[2]
        covs = chols @ jnp.swapaxes(chols, -1, -2)
        return jnp.sqrt(jnp.linalg.eigvalsh(covs)[..., 0])

    def mode_weights(self, c: chex.Array) -> chex.Array:
        """Mixture weights, (B, M)."""
        return jnp.exp(self.component_params(c)[0])


@dataclasses.dataclass(frozen=True)
class MovingGMM(_SquareBox2D, _ConditionalGMM):
    """An easy conditional GMM (d = 2, d_c = 1) whose modes rotate and move outwards with c.

    For c in [-1, 1] and i = 0..M-1:
      angle_i = 2 pi i / M + rotation * c,   r(c) = radius * (1 + 0.25 c),
      mu_i = r(c) (cos angle_i, sin angle_i),
      L_i = [[0.4 + 0.1 sin(2c + i), 0], [0.15 sin(c + i), 0.4 + 0.1 cos(2c + i)]],
      logit_i = 0.5 sin(pi c + pi i / 2).
    Component stds lie in [0.3, 0.55]; with the defaults (M = 4, radius 3) neighbouring modes are
    at least 3.1 apart (> 5.5 std), so the component means are the mixture's modes to high
    precision, and the weights stay within a factor e of each other.
    """

    num_modes: int = 4
    radius: float = 3.0
    rotation: float = 0.5
    context_bound: float = 1.0

    name: ClassVar[str] = "moving_gmm"
    dim: ClassVar[int] = 2
    context_dim: ClassVar[int] = 1

    def __post_init__(self):
        if self.num_modes < 1 or self.radius <= 0 or self.context_bound <= 0:
            raise ValueError(f"moving_gmm: bad settings {self}")

    @property
    def _half_width(self) -> float:
        return self.radius * (1 + 0.25 * self.context_bound) + 5 * math.sqrt(0.5**2 * 2 + 0.15**2)

    def sample_contexts(self, key: chex.PRNGKey, n: int) -> chex.Array:
        return _cube_contexts(key, n, 1, self.context_bound)

    def _params_single(self, c):
        c0 = c[0]
        i = jnp.arange(self.num_modes, dtype=c.dtype)
        angle = 2 * jnp.pi * i / self.num_modes + self.rotation * c0
        r = self.radius * (1 + 0.25 * c0)
        means = r * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
        zero = jnp.zeros_like(i)
        chols = jnp.stack(
            [
                jnp.stack([0.4 + 0.1 * jnp.sin(2 * c0 + i), zero], axis=-1),
                jnp.stack([0.15 * jnp.sin(c0 + i), 0.4 + 0.1 * jnp.cos(2 * c0 + i)], axis=-1),
            ],
            axis=-2,
        )
        logits = 0.5 * jnp.sin(jnp.pi * c0 + jnp.pi * i / 2)
        return jax.nn.log_softmax(logits), means, chols


@dataclasses.dataclass(frozen=True)
class SpiralGMM(_SquareBox2D, _ConditionalGMM):
    """The thesis spiral GMM (docs/math.md §8.4): d = 2, K_t components, c ~ U(-3, 3)^{d_c}.

    t_i = 14 pi i / K_t, b_i = t_i + 0.1 c_0, mu_i = 0.3 t_i (cos b_i, sin b_i);
    logit_i = sin((i+1) c_0) (i even), cos((i+1) c_1) (i odd);
    d_c = 2: L_i = [[0.3 sin((i+1)c_0) + 0.5, 0], [0.3 sin(c_0) cos(c_1), 0.3 cos((i+1)c_1) + 0.5]];
    d_c = 1: c_1 := c_0 in the logits and
             L_i = [[0.5 sin((i+1)c_0) + 0.8, 0], [sin(3c_0) cos(3c_0), 0.5 cos((i+1)c_0) + 0.8]].
    """

    num_components: int = 10
    context_dim: int = 2
    context_bound: float = 3.0

    name: ClassVar[str] = "spiral_gmm"
    dim: ClassVar[int] = 2

    def __post_init__(self):
        if self.context_dim not in (1, 2):
            raise ValueError(f"spiral_gmm: context_dim must be 1 or 2, got {self.context_dim}")
        if self.num_components < 1 or self.context_bound <= 0:
            raise ValueError(f"spiral_gmm: bad settings {self}")

    @property
    def _half_width(self) -> float:
        t_max = 14 * math.pi * (self.num_components - 1) / self.num_components
        # Frobenius norm of the largest Cholesky factor bounds every component std.
        chol_norm = math.sqrt(0.8**2 * 2 + 0.3**2) if self.context_dim == 2 else math.sqrt(3.88)
        return 0.3 * t_max + 5 * chol_norm

    def sample_contexts(self, key: chex.PRNGKey, n: int) -> chex.Array:
        return _cube_contexts(key, n, self.context_dim, self.context_bound)

    def _params_single(self, c):
        k = self.num_components
        c0 = c[0]
        c1 = c[1] if self.context_dim == 2 else c[0]
        f = jnp.arange(1, k + 1, dtype=c.dtype)
        t = 14 * jnp.pi * jnp.arange(k, dtype=c.dtype) / k
        b = t + 0.1 * c0
        means = 0.3 * t[:, None] * jnp.stack([jnp.cos(b), jnp.sin(b)], axis=-1)
        if self.context_dim == 2:
            l00 = 0.3 * jnp.sin(f * c0) + 0.5
            l10 = jnp.broadcast_to(0.3 * jnp.sin(c0) * jnp.cos(c1), (k,))
            l11 = 0.3 * jnp.cos(f * c1) + 0.5
        else:
            l00 = 0.5 * jnp.sin(f * c0) + 0.8
            l10 = jnp.broadcast_to(jnp.sin(3 * c0) * jnp.cos(3 * c0), (k,))
            l11 = 0.5 * jnp.cos(f * c0) + 0.8
        zero = jnp.zeros_like(l00)
        chols = jnp.stack(
            [jnp.stack([l00, zero], axis=-1), jnp.stack([l10, l11], axis=-1)], axis=-2
        )
        log_w = jax.nn.log_softmax(_alternating_logits(c0, c1, k))
        return log_w, means, chols


# R = [[-0.9751, -0.2217], [0.2217, -0.9751]] of the thesis, rebuilt from its angle so that it is
# exactly orthogonal (the rounded matrix has det 0.99997, a 3e-5 error in log Z).
_BANANA_ANGLE = math.atan2(0.2217, -0.9751)
_BANANA_VAR = 0.4
_BANANA_N_STD = 4.0


@dataclasses.dataclass(frozen=True)
class BananaMixture(_SquareBox2D, _NormalizedTarget):
    """The thesis banana mixture (docs/math.md §8.4): d = 2, d_c = 1, c ~ U(-3, 3).

    Curvatures kappa(c): K_t = 5: (0.2c + 1.5, -0.2c - 1.5, c, 0.5c + 1, -0.5c - 1);
    K_t = 2: (c, 0.5c + 1); K_t = 1: (c) (a single banana). Weights softmax of the alternating
    sin/cos logits. Component i: y = R (x - t_i), t_i = 4 sin(3 kappa_i + 3) (1, 1),
    z = (y_0, y_1 - kappa_i y_0^2 + kappa_i), log p_i(x|c) = log N(z; 0, 0.4 I) (unit Jacobian).
    The box covers |z_j| <= 4 std for every context in the range.
    """

    num_components: int = 5
    context_bound: float = 3.0

    name: ClassVar[str] = "banana"
    dim: ClassVar[int] = 2
    context_dim: ClassVar[int] = 1

    def __post_init__(self):
        if self.num_components not in (1, 2, 5):
            raise ValueError(f"banana: num_components must be 1, 2 or 5, got {self.num_components}")
        if self.context_bound <= 0:
            raise ValueError(f"banana: context_bound must be > 0, got {self.context_bound}")

    def curvatures(self, c0: chex.Array) -> chex.Array:
        """Curvatures for a scalar context c0 -> (K_t,)."""
        if self.num_components == 1:
            return jnp.stack([c0])
        if self.num_components == 2:
            return jnp.stack([c0, 0.5 * c0 + 1])
        return jnp.stack([0.2 * c0 + 1.5, -0.2 * c0 - 1.5, c0, 0.5 * c0 + 1, -0.5 * c0 - 1])

    @property
    def _half_width(self) -> float:
        kappa = np.abs(np.asarray(self.curvatures(jnp.asarray([-1.0, 1.0]) * self.context_bound)))
        z_max = _BANANA_N_STD * math.sqrt(_BANANA_VAR)
        return 4.0 + z_max + (z_max + float(kappa.max()) * (z_max**2 + 1))

    def sample_contexts(self, key: chex.PRNGKey, n: int) -> chex.Array:
        return _cube_contexts(key, n, 1, self.context_bound)

    def _rotation(self, dtype) -> chex.Array:
        cos, sin = math.cos(_BANANA_ANGLE), math.sin(_BANANA_ANGLE)
        return jnp.asarray([[cos, -sin], [sin, cos]], dtype)

    def _components(self, c0: chex.Array) -> tuple[chex.Array, chex.Array, chex.Array]:
        """log-weights (K,), curvatures (K,), translations (K, 2) for a scalar context."""
        kappa = self.curvatures(c0)
        shift = 4 * jnp.sin(3 * kappa + 3)
        log_w = jax.nn.log_softmax(_alternating_logits(c0, c0, self.num_components))
        return log_w, kappa, jnp.stack([shift, shift], axis=-1)

    def _log_prob_single(self, x, c):
        log_w, kappa, trans = self._components(c[0])
        y = (x - trans) @ self._rotation(x.dtype).T  # rows: R (x - t_i)
        z1 = y[:, 1] - kappa * y[:, 0] ** 2 + kappa
        log_n = -0.5 * (y[:, 0] ** 2 + z1**2) / _BANANA_VAR - math.log(2 * math.pi * _BANANA_VAR)
        return jax.nn.logsumexp(log_w + log_n)

    def sample(self, key: chex.PRNGKey, c: chex.Array, n: int) -> chex.Array:
        """Exact samples: contexts c (B, 1) -> (n, B, 2)."""
        c = self.check_contexts(c)
        c = c.astype(jnp.promote_types(c.dtype, jnp.float32))
        log_w, kappa, trans = jax.vmap(self._components)(c[:, 0])  # (B, K), (B, K), (B, K, 2)
        key_k, key_z = jax.random.split(key)
        k = jax.random.categorical(key_k, log_w, axis=-1, shape=(n, c.shape[0]))
        rows = jnp.arange(c.shape[0])[None, :]
        kap = kappa[rows, k]  # (n, B)
        z = math.sqrt(_BANANA_VAR) * jax.random.normal(key_z, (n, c.shape[0], 2), c.dtype)
        y = jnp.stack([z[..., 0], z[..., 1] + kap * z[..., 0] ** 2 - kap], axis=-1)
        return y @ self._rotation(c.dtype) + trans[rows, k]  # R^T y + t_i


@dataclasses.dataclass(frozen=True)
class Funnel(_NormalizedTarget):
    """The thesis conditional funnel (docs/math.md §8.4), c ~ U(-3, 3)^{d_c}.

    sigma(c) = sin(3 c_0 c_1 + 1) + 1.1 (d_c = 2) or sin(3 c_0 + 1) + 1.1 (d_c = 1);
    x_0 ~ N(0, sigma^2), x_{1..d-1} | x_0 ~ N(0, exp(v) I) with v = max(x_0, log_var_floor).

    The floor (default -20, i.e. 9.5 sigma_max below the mean) keeps log p finite for extreme
    negative x_0, where exp(-x_0) would overflow float32. Each conditional stays a normalised
    Gaussian, so log Z = 0 exactly and `sample` uses the same floor; it changes the density only
    where x_0 < floor, a region of mass < 1e-20. The box is +-5 sigma_max for x_0 and +-5
    marginal stds (5 exp(sigma_max^2 / 4)) for the others.
    """

    dim: int = 10
    context_dim: int = 2
    log_var_floor: float = -20.0
    context_bound: float = 3.0

    name: ClassVar[str] = "funnel"

    def __post_init__(self):
        if self.dim < 2 or self.context_dim not in (1, 2) or self.context_bound <= 0:
            raise ValueError(f"funnel: need dim >= 2 and context_dim in (1, 2), got {self}")

    @property
    def lower(self) -> np.ndarray:
        return -self.upper

    @property
    def upper(self) -> np.ndarray:
        sigma_max = 2.1
        half = np.full(self.dim, 5 * math.exp(sigma_max**2 / 4))
        half[0] = 5 * sigma_max
        return half

    def sample_contexts(self, key: chex.PRNGKey, n: int) -> chex.Array:
        return _cube_contexts(key, n, self.context_dim, self.context_bound)

    def sigma(self, c: chex.Array) -> chex.Array:
        """Std of x_0 for contexts c (..., d_c) -> (...)."""
        c = jnp.asarray(c)
        arg = 3 * c[..., 0] * c[..., 1] if self.context_dim == 2 else 3 * c[..., 0]
        return jnp.sin(arg + 1) + 1.1

    def _log_prob_single(self, x, c):
        sigma = self.sigma(c)
        v = x[0]
        log_var = jnp.maximum(v, self.log_var_floor)
        lp0 = -0.5 * (v / sigma) ** 2 - jnp.log(sigma) - 0.5 * _LOG_2PI
        n_rest = self.dim - 1
        lp_rest = -0.5 * jnp.sum(x[1:] ** 2) * jnp.exp(-log_var) - 0.5 * n_rest * (
            log_var + _LOG_2PI
        )
        return lp0 + lp_rest

    def sample(self, key: chex.PRNGKey, c: chex.Array, n: int) -> chex.Array:
        """Exact samples: contexts c (B, d_c) -> (n, B, d)."""
        c = self.check_contexts(c)
        c = c.astype(jnp.promote_types(c.dtype, jnp.float32))
        key_v, key_rest = jax.random.split(key)
        v = self.sigma(c) * jax.random.normal(key_v, (n, c.shape[0]), c.dtype)
        scale = jnp.exp(0.5 * jnp.maximum(v, self.log_var_floor))
        rest = scale[..., None] * jax.random.normal(
            key_rest, (n, c.shape[0], self.dim - 1), c.dtype
        )
        return jnp.concatenate([v[..., None], rest], axis=-1)
