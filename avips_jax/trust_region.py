"""Per-component adaptive KL trust-region bounds (docs/math.md §4; VIPS, Arenz et al.).

Each mixture slot k has its own bounds (eps_mean_k, eps_cov_k), shared over contexts. After an
update, the slot's objective J_k (larger is better, e.g. its context-averaged reward
R_k = E_c[log w_k(c) + E_{q_k}[log p - log q]] on the same contexts) is compared with the value
recorded at the previous update:
  improved      -> both bounds *= grow   (default 1.1), clipped to their max;
  not improved  -> both bounds *= shrink (default 0.5), clipped to their min.
Ties count as "not improved" (as in VIPS: shrink if R[t-2] >= R[t-1]). VIPS itself uses the
gentler factors 1.15 / 0.85 with limits [1e-3, 1] (docs/math.md §4.2; gmmvi improvement-based
stepsize adaptation); pass `grow=1.15, shrink=0.85` for that variant.

History: `last_objective` holds NaN for "no history". The first update after `init_trust_region`
or `reset_slot` only records the objective. A non-finite objective (a failed update) counts as
"not improved" for a slot with history and is not recorded, so the next comparison is against
the last finite value. Inactive slots are left unchanged. Everything is jit-able.
"""

import chex
import flax
import jax.numpy as jnp


@flax.struct.dataclass
class TrustRegionState:
    """Bounds and history per component slot.

    Attributes:
      eps_mean: bound on the mean part of KL(q_k || q_k_old), (K,).
      eps_cov: bound on the covariance part, (K,).
      last_objective: objective at the previous update, (K,); NaN = no history.
    """

    eps_mean: chex.Array
    eps_cov: chex.Array
    last_objective: chex.Array


def init_trust_region(
    num_components: int, eps_mean: chex.Numeric, eps_cov: chex.Numeric, dtype=jnp.float32
) -> TrustRegionState:
    """Initial state: the given bounds (scalars or (K,)) for every slot, no history.

    Raises:
      ValueError: if num_components < 1 or a bound does not broadcast to (K,).
    """
    if num_components < 1:
        raise ValueError(f"num_components must be >= 1, got {num_components}")
    shape = (num_components,)

    def _full(name, value):
        value = jnp.asarray(value, dtype)
        if value.ndim > 1 or (value.ndim == 1 and value.shape != shape):
            raise ValueError(f"{name} must be a scalar or of shape {shape}, got {value.shape}")
        return jnp.broadcast_to(value, shape)

    return TrustRegionState(
        eps_mean=_full("eps_mean", eps_mean),
        eps_cov=_full("eps_cov", eps_cov),
        last_objective=jnp.full(shape, jnp.nan, dtype),
    )


def _check_factors(grow, shrink, limits) -> None:
    """Validates concrete (Python number) settings; traced values are not checked."""
    if isinstance(grow, (int, float)) and grow < 1:
        raise ValueError(f"grow must be >= 1, got {grow}")
    if isinstance(shrink, (int, float)) and not 0 < shrink <= 1:
        raise ValueError(f"shrink must be in (0, 1], got {shrink}")
    for name, (low, high) in limits.items():
        if isinstance(low, (int, float)) and isinstance(high, (int, float)) and not 0 < low <= high:
            raise ValueError(f"need 0 < min <= max for {name}, got [{low}, {high}]")


def update_trust_region(
    state: TrustRegionState,
    objective: chex.Array,
    active: chex.Array,
    *,
    baseline: chex.Array | None = None,
    grow: float,
    shrink: float,
    min_eps_mean: float,
    max_eps_mean: float,
    min_eps_cov: float,
    max_eps_cov: float,
) -> TrustRegionState:
    """Grows the bounds of slots whose objective improved, shrinks the others.

    Args:
      state: current state, fields of shape (K,).
      objective: this update's objective per slot, (K,), larger is better.
      active: bool mask of slots in use, (K,); inactive slots are unchanged.
      baseline: optional (K,) objective of the model before the update on the SAME contexts and
        samples; if given, "improved" means objective > baseline (a paired comparison) instead
        of objective > the value recorded at the previous update (which, with fresh contexts every
        step, compares two different batches: a coin flip whose 1.15 / 0.85 drift drove the
        bounds to their minimum on the IK targets).
      grow: factor (>= 1) applied on improvement.
      shrink: factor in (0, 1] applied otherwise.
      min_eps_mean, max_eps_mean: limits of eps_mean.
      min_eps_cov, max_eps_cov: limits of eps_cov.
      (No defaults: the values come from `config.trust_region`, the one source of truth.)

    Returns:
      The new state.

    Raises:
      ValueError: for shapes other than (K,) or invalid concrete factors/limits.
    """
    shape = state.eps_mean.shape
    objective, active = jnp.asarray(objective), jnp.asarray(active)
    if baseline is not None and jnp.shape(baseline) != shape:
        raise ValueError(f"baseline {jnp.shape(baseline)} must have shape {shape}")
    if objective.shape != shape or active.shape != shape:
        raise ValueError(
            f"objective {objective.shape} and active {active.shape} must have shape {shape}"
        )
    _check_factors(
        grow,
        shrink,
        {"eps_mean": (min_eps_mean, max_eps_mean), "eps_cov": (min_eps_cov, max_eps_cov)},
    )
    active = active.astype(bool)
    objective = objective.astype(state.last_objective.dtype)
    reference = state.last_objective if baseline is None else jnp.asarray(baseline, objective.dtype)
    has_history = jnp.isfinite(reference)
    finite = jnp.isfinite(objective)
    improved = finite & (objective > reference)
    factor = jnp.where(improved, grow, shrink).astype(state.eps_mean.dtype)
    adapt = active & has_history
    eps_mean = jnp.clip(state.eps_mean * factor, min_eps_mean, max_eps_mean)
    eps_cov = jnp.clip(state.eps_cov * factor, min_eps_cov, max_eps_cov)
    return TrustRegionState(
        eps_mean=jnp.where(adapt, eps_mean, state.eps_mean),
        eps_cov=jnp.where(adapt, eps_cov, state.eps_cov),
        last_objective=jnp.where(active & finite, objective, state.last_objective),
    )


def reset_slots(
    state: TrustRegionState, mask: chex.Array, eps_mean: chex.Numeric, eps_cov: chex.Numeric
) -> TrustRegionState:
    """Fresh bounds and no history for the slots where `mask` (K,) is True (new components)."""
    mask = jnp.asarray(mask)
    if mask.shape != state.eps_mean.shape:
        raise ValueError(f"mask must have shape {state.eps_mean.shape}, got {mask.shape}")
    mask = mask.astype(bool)
    dtype = state.eps_mean.dtype
    return TrustRegionState(
        eps_mean=jnp.where(mask, jnp.asarray(eps_mean, dtype), state.eps_mean),
        eps_cov=jnp.where(mask, jnp.asarray(eps_cov, dtype), state.eps_cov),
        last_objective=jnp.where(mask, jnp.nan, state.last_objective),
    )


def reset_slot(
    state: TrustRegionState, slot: chex.Numeric, eps_mean: chex.Numeric, eps_cov: chex.Numeric
) -> TrustRegionState:
    """Fresh bounds and no history for one slot (an int or a traced int scalar).

    Raises:
      ValueError: for a concrete slot outside [0, K).
    """
    num = state.eps_mean.shape[0]
    if isinstance(slot, int) and not 0 <= slot < num:
        raise ValueError(f"slot {slot} out of range for {num} components")
    mask = jnp.arange(num) == jnp.asarray(slot)
    return reset_slots(state, mask, eps_mean, eps_cov)
