"""Flax (linen) networks mapping a batch of contexts (B, d_c) to conditional-GMM parameters.

Two architectures, chosen by `ConditionalGMM.architecture`:
- "per_component": K independent component MLPs, stacked with `nn.vmap` over the slot axis.
- "shared_trunk": one trunk MLP of the context, then per-slot linear heads (equivalent to one
  Dense layer to K * (d + d(d+1)/2) outputs, stored slot-major).
A gating MLP gives the K logits. In both cases the variables are
`{"params": ..., "slots": ...}`; "params" is trained, "slots" holds fixed per-slot offsets
(mean pre-activation, Cholesky-diagonal raw value, logit) that initialisation and component
adding use to place components. Every leaf under params["components"] has the slot axis first.

Output transform per context c and slot k (docs/math.md §1.2):
    pre_k  = mean_head_k(h_k(c)) + mean_offset_k
    mean_k = mid + half * tanh(pre_k)   ("tanh")   or   mid + half * pre_k   ("linear")
    diag_k = softplus(diag_head_k(h_k(c)) + diag_offset_k + softplus^{-1}(init_std - min_std))
             + min_std
    L_k    = diag(diag_k) + offdiag_scale * strictly_lower(offdiag_head_k(h_k(c)))
    logit_k = gate(c)_k + logit_offset_k
with mid = (lower + upper) / 2, half = (upper - lower) / 2 of the box. Mean heads start at zero,
so at initialisation every context gets the mean given by its slot offset.
"""

import functools
from collections.abc import Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from avips_jax import gmm

ARCHITECTURES = ("per_component", "shared_trunk")
MEAN_SQUASHES = ("tanh", "linear")
ACTIVATIONS = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "elu": nn.elu,
    "softplus": nn.softplus,
}

# Variable names that component adding (components.py) edits.
GATE = "gate"
GATE_HEAD = "head"
COMPONENTS = "components"
MEAN_HEAD = "mean_head"
DIAG_HEAD = "diag_head"
OFFDIAG_HEAD = "offdiag_head"
SLOTS = "slots"
MEAN_OFFSET = "mean_offset"
DIAG_OFFSET = "diag_offset"
LOGIT_OFFSET = "logit_offset"

# Largest |u| fed to arctanh when mapping a point back to the pre-squash space.
_TANH_CLIP = 1.0 - 1e-6
_xavier = nn.initializers.xavier_normal()


def _activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}.")
    return ACTIVATIONS[name]


def box_center_half_range(
    lower: Sequence[float], upper: Sequence[float]
) -> tuple[jax.Array, jax.Array]:
    """Midpoint and half-range of the box [lower, upper], each (d,)."""
    lower, upper = jnp.asarray(lower), jnp.asarray(upper)
    return 0.5 * (lower + upper), 0.5 * (upper - lower)


def preactivation_to_mean(
    pre: chex.Array, lower: Sequence[float], upper: Sequence[float], squash: str
) -> chex.Array:
    """Maps pre-squash values (..., d) to means in the box [lower, upper] (tanh) or beyond it."""
    mid, half = box_center_half_range(lower, upper)
    if squash == "tanh":
        return mid + half * jnp.tanh(pre)
    if squash == "linear":
        return mid + half * pre
    raise ValueError(f"Unknown mean_squash {squash!r}; choose one of {MEAN_SQUASHES}.")


def mean_to_preactivation(
    x: chex.Array, lower: Sequence[float], upper: Sequence[float], squash: str
) -> chex.Array:
    """Inverse of `preactivation_to_mean`; with tanh, points outside the box are clipped into it
    (at most 1e-6 of the half-range inside the edge)."""
    mid, half = box_center_half_range(lower, upper)
    u = (x - mid) / half
    if squash == "tanh":
        return jnp.arctanh(jnp.clip(u, -_TANH_CLIP, _TANH_CLIP))
    if squash == "linear":
        return u
    raise ValueError(f"Unknown mean_squash {squash!r}; choose one of {MEAN_SQUASHES}.")


class MLP(nn.Module):
    """Dense layers `layer_0 ... layer_{n-1}` each followed by the activation (no output layer)."""

    hidden: Sequence[int]
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: chex.Array) -> chex.Array:
        act = _activation(self.activation)
        for i, width in enumerate(self.hidden):
            x = act(nn.Dense(width, kernel_init=_xavier, name=f"layer_{i}")(x))
        return x


class GateNet(nn.Module):
    """Gating MLP: contexts (B, d_c) -> (features (B, H_g), raw logits (B, K))."""

    num_components: int
    hidden: Sequence[int]
    activation: str = "relu"

    @nn.compact
    def __call__(self, contexts: chex.Array) -> tuple[chex.Array, chex.Array]:
        act = _activation(self.activation)
        h = contexts
        for i, width in enumerate(self.hidden):
            h = act(nn.Dense(width, kernel_init=_xavier, name=f"layer_{i}")(h))
        return h, nn.Dense(self.num_components, kernel_init=_xavier, name=GATE_HEAD)(h)


class ComponentNet(nn.Module):
    """One slot: optional hidden layers, then linear mean / diagonal / off-diagonal heads.

    Returns (features, mean_raw, diag_raw, offdiag_raw) with shapes (B, H), (B, d), (B, d),
    (B, d(d-1)/2); features are the heads' input (the contexts if `hidden` is empty).
    """

    dim: int
    hidden: Sequence[int] = ()
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: chex.Array):
        act = _activation(self.activation)
        for i, width in enumerate(self.hidden):
            x = act(nn.Dense(width, kernel_init=_xavier, name=f"layer_{i}")(x))
        mean = nn.Dense(self.dim, kernel_init=nn.initializers.zeros, name=MEAN_HEAD)(x)
        diag = nn.Dense(self.dim, kernel_init=_xavier, name=DIAG_HEAD)(x)
        n_off = gmm.num_offdiag(self.dim)
        if n_off:
            off = nn.Dense(n_off, kernel_init=_xavier, name=OFFDIAG_HEAD)(x)
        else:
            off = jnp.zeros(x.shape[:-1] + (0,), dtype=mean.dtype)
        return x, mean, diag, off


class ConditionalGMM(nn.Module):
    """Context (B, d_c) -> `gmm.GMMParams` with K = num_components slots (see module docstring).

    Attributes:
        num_components: K_max, the number of slots.
        dim: d, the dimension of x.
        lower, upper: (d,) box of the output (e.g. joint limits), as tuples of floats.
        architecture: "per_component" or "shared_trunk".
        component_hidden: hidden widths of each component MLP (per_component) or of the trunk.
        gate_hidden: hidden widths of the gating MLP.
        activation: name in `ACTIVATIONS`.
        mean_squash: "tanh" (means stay inside the box) or "linear".
        init_std: Cholesky diagonal at a zero raw output (scalar or d floats), > min_std.
        min_std: floor of the Cholesky diagonal.
        offdiag_scale: factor on the raw off-diagonal outputs.
        init_spread: initial mean offsets are uniform over this fraction of the box, in (0, 1].
    """

    num_components: int
    dim: int
    lower: Sequence[float]
    upper: Sequence[float]
    architecture: str = "per_component"
    component_hidden: Sequence[int] = (64, 64)
    gate_hidden: Sequence[int] = (64, 64)
    activation: str = "relu"
    mean_squash: str = "tanh"
    init_std: float | Sequence[float] = 1.0
    min_std: float = 1e-3
    offdiag_scale: float = 1.0
    init_spread: float = 0.9

    def setup(self):
        _validate(self)
        k, d = self.num_components, self.dim
        self.gate = GateNet(k, tuple(self.gate_hidden), self.activation, name=GATE)
        stacked = nn.vmap(
            ComponentNet,
            in_axes=None,
            out_axes=1,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            axis_size=k,
        )
        if self.architecture == "per_component":
            self.trunk = None
            hidden = tuple(self.component_hidden)
        else:
            self.trunk = MLP(tuple(self.component_hidden), self.activation, name="trunk")
            hidden = ()
        self.components = stacked(d, hidden, self.activation, name=COMPONENTS)
        self.mean_offset = self.variable(
            SLOTS, MEAN_OFFSET, lambda: self._initial_mean_offsets(self.make_rng("params"))
        )
        self.diag_offset = self.variable(SLOTS, DIAG_OFFSET, jnp.zeros, (k, d))
        self.logit_offset = self.variable(SLOTS, LOGIT_OFFSET, jnp.zeros, (k,))

    def _initial_mean_offsets(self, key: chex.PRNGKey) -> chex.Array:
        """Means uniform over the central `init_spread` fraction of the box, as pre-activations."""
        mid, half = box_center_half_range(self.lower, self.upper)
        u = jax.random.uniform(
            key, (self.num_components, self.dim), minval=-self.init_spread, maxval=self.init_spread
        )
        return mean_to_preactivation(mid + half * u, self.lower, self.upper, self.mean_squash)

    def _check_contexts(self, contexts: chex.Array) -> None:
        if jnp.ndim(contexts) != 2:
            raise ValueError(f"contexts must have shape (B, d_c), got {jnp.shape(contexts)}.")
        if self.is_initializing():
            return
        first = "layer_0" if self.gate_hidden else GATE_HEAD
        expected = self.variables["params"][GATE][first]["kernel"].shape[0]
        if contexts.shape[1] != expected:
            raise ValueError(
                f"contexts must have shape (B, d_c={expected}) (the d_c given at init), "
                f"got {contexts.shape}."
            )

    def head_features(self, contexts: chex.Array) -> tuple[chex.Array, chex.Array]:
        """Inputs of the last linear layers: gate features (B, H_g), component features (B, K, H).

        Component outputs of slot k are affine in component_features[:, k]; logits are affine in
        the gate features. Used by component adding to fit a slot's heads in closed form.
        """
        self._check_contexts(contexts)
        gate_features, _ = self.gate(contexts)
        trunk = contexts if self.trunk is None else self.trunk(contexts)
        component_features = self.components(trunk)[0]
        return gate_features, component_features

    def __call__(self, contexts: chex.Array) -> gmm.GMMParams:
        """Contexts (B, d_c) -> GMMParams: logits (B, K), means (B, K, d), chols (B, K, d, d)."""
        self._check_contexts(contexts)
        _, raw_logits = self.gate(contexts)
        trunk = contexts if self.trunk is None else self.trunk(contexts)
        _, mean_raw, diag_raw, off_raw = self.components(trunk)
        means = preactivation_to_mean(
            mean_raw + self.mean_offset.value, self.lower, self.upper, self.mean_squash
        )
        diag = gmm.diag_from_raw(
            diag_raw + self.diag_offset.value, jnp.asarray(self.init_std), self.min_std
        )
        chols = gmm.make_cholesky(diag, self.offdiag_scale * off_raw)
        return gmm.GMMParams(logits=raw_logits + self.logit_offset.value, means=means, chols=chols)


def _validate(module: ConditionalGMM) -> None:
    """Raises ValueError for inconsistent ConditionalGMM fields."""
    if module.architecture not in ARCHITECTURES:
        raise ValueError(
            f"Unknown architecture {module.architecture!r}; choose one of {ARCHITECTURES}."
        )
    if module.mean_squash not in MEAN_SQUASHES:
        raise ValueError(
            f"Unknown mean_squash {module.mean_squash!r}; choose one of {MEAN_SQUASHES}."
        )
    _activation(module.activation)
    if module.num_components < 1 or module.dim < 1:
        raise ValueError(
            f"num_components and dim must be >= 1, got {module.num_components}, {module.dim}."
        )
    lower, upper = np.asarray(module.lower, float), np.asarray(module.upper, float)
    if lower.shape != (module.dim,) or upper.shape != (module.dim,):
        raise ValueError(
            f"lower/upper must have shape (d,) = ({module.dim},), got {lower.shape}, {upper.shape}."
        )
    if not np.all(upper > lower):
        raise ValueError(f"Need upper > lower elementwise, got lower={lower}, upper={upper}.")
    init_std = np.asarray(module.init_std, float)
    if init_std.shape not in ((), (module.dim,)) or not np.all(init_std > module.min_std):
        raise ValueError(
            f"init_std must be a scalar or ({module.dim},) > min_std={module.min_std}, "
            f"got {module.init_std}."
        )
    if not 0.0 < module.init_spread <= 1.0:
        raise ValueError(f"init_spread must be in (0, 1], got {module.init_spread}.")


def make_gmm_network(
    num_components: int,
    dim: int,
    lower: jax.typing.ArrayLike,
    upper: jax.typing.ArrayLike,
    **fields,
) -> ConditionalGMM:
    """Builds a `ConditionalGMM`, turning array-like box bounds and widths into hashable tuples.

    Args:
        num_components: K_max.
        dim: d.
        lower, upper: (d,) box of the means.
        **fields: any other `ConditionalGMM` field (architecture, component_hidden, ...).

    Raises:
        ValueError: for an unknown field or an invalid value.
    """
    known = set(ConditionalGMM.__dataclass_fields__) - {"parent", "name"}
    unknown = set(fields) - known
    if unknown:
        raise ValueError(
            f"Unknown ConditionalGMM fields {sorted(unknown)}; known: {sorted(known)}."
        )
    for name in ("component_hidden", "gate_hidden"):
        if name in fields:
            fields[name] = tuple(int(w) for w in fields[name])
    if "init_std" in fields and np.ndim(fields["init_std"]) > 0:
        fields["init_std"] = tuple(float(s) for s in np.ravel(fields["init_std"]))
    as_tuple = lambda a: tuple(float(v) for v in np.ravel(a))
    module = ConditionalGMM(
        num_components=num_components,
        dim=dim,
        lower=as_tuple(lower),
        upper=as_tuple(upper),
        **fields,
    )
    _validate(module)
    return module


def init_gmm_network(key: chex.PRNGKey, module: ConditionalGMM, context_dim: int) -> dict:
    """Initialises the variables {"params": ..., "slots": ...} for contexts of size d_c.

    The initial mean offsets are drawn from `key` as well (uniform over the box).
    """
    if int(context_dim) < 1:
        raise ValueError(f"context_dim must be >= 1, got {context_dim}.")
    variables = _jitted_init(module, int(context_dim))(key)
    return {"params": variables["params"], SLOTS: variables[SLOTS]}


@functools.lru_cache(maxsize=16)
def _jitted_init(module: ConditionalGMM, context_dim: int) -> Callable:
    """`module.init` at one (1, d_c) context as one jitted program: compiled once per module
    instead of one small program per operation (the eager init took ~10 s on 2 CPU cores)."""
    return jax.jit(lambda key: module.init(key, jnp.zeros((1, context_dim))))
