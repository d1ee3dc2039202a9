"""Adding and removing mixture components under static shapes (K_max slots + an active mask).

Removal (docs/math.md §6.2): a slot whose context-averaged weight stays below a threshold for
`patience` consecutive checks is deactivated; the last active slot is never removed.

Adding (docs/math.md §6.4): the lowest free slot is placed by editing only its own variables:
- mean: the slot's mean head (a linear layer on the slot's head features) is fitted in closed form
  by ridge regression so that its mean passes through one target point per context, with the
  slot's mean offset set to the context-average target (so the fit only models the variation).
  With the "per_component" architecture, `fit_steps` Adam steps on the slot's whole MLP (its own
  parameters only) then refine the fit: the closed form is the exact least-squares solution for
  the head, the steps let the hidden layers bend as well. With "shared_trunk" the slot owns only
  linear heads, so the closed form is the whole fit;
- Cholesky: the slot's diagonal / off-diagonal heads are zeroed and its diagonal offset is set so
  that L = std * I for every context (std from the entropy-matching rule by default);
- weight: the gate head's column (and logit offset) of one active "donor" slot d is copied to
  the new slot, with log(w / (1 - w)) added to the offset (w = `init_weight`). The new weight is
  then w_new(c) = r w_d(c) / (1 + r w_d(c)) with r = w / (1 - w): never above `init_weight`, for
  every context, seen or not, and equal to it where the donor holds all the weight. The donor is
  the slot with the largest mean log-weight on the given contexts, which maximises the new slot's
  mean log-weight there among all convex combinations of the active columns (every such
  combination keeps the bound, since it stays below the largest logit). An earlier ridge fit of
  the column to a target logit interpolated the B contexts (B ~ gate width) and extrapolated
  wildly: on Panda the new slot took more than half the weight on 56% of fresh contexts, with
  645 mm error, after every add.
Only the slot's parameters, its offsets and its gate column change, so every other component's
outputs stay bit-for-bit unchanged (the other weights shrink by the factor 1 - w through the
normalisation). If there is no free slot, or the fit is not finite (e.g. NaN target points),
adding is a no-op (`added` is False).
"""

import math

import chex
import flax
import jax
import jax.numpy as jnp
import optax

from avips_jax import gmm, networks, pytree, slot_layout


@flax.struct.dataclass
class ComponentState:
    """Which slots are live, and the removal bookkeeping.

    Attributes:
        active: (K,) bool mask of live slots.
        low_weight_count: (K,) int32 consecutive removal checks with a low average weight; a
            negative value -g marks a newborn in its grace period, g removal checks from its end
            (`in_grace`).
        num_added: () int32 number of components added so far.
        num_removed: () int32 number of components removed so far.
    """

    active: chex.Array
    low_weight_count: chex.Array
    num_added: chex.Array
    num_removed: chex.Array


def init_component_state(num_components: int, num_active: int) -> ComponentState:
    """State with the first `num_active` of `num_components` slots active."""
    if not 1 <= num_active <= num_components:
        raise ValueError(
            f"num_active must be in [1, num_components={num_components}], got {num_active}."
        )
    return ComponentState(
        active=jnp.arange(num_components) < num_active,
        low_weight_count=jnp.zeros((num_components,), jnp.int32),
        num_added=jnp.zeros((), jnp.int32),
        num_removed=jnp.zeros((), jnp.int32),
    )


def in_grace(state: ComponentState) -> chex.Array:
    """(K,) bool: active slots still in the grace period they were born with (`add_component`'s
    grace_checks): not removed, and their gate column is frozen by the train step."""
    return state.active & (state.low_weight_count < 0)


def num_active(state: ComponentState) -> chex.Array:
    """Number of active slots, () int32."""
    return jnp.sum(state.active.astype(jnp.int32))


# --------------------------------------------------------------------------------------------
# Removal
# --------------------------------------------------------------------------------------------


def _check_weights(weights: chex.Array, active: chex.Array) -> None:
    k = jnp.shape(active)[0]
    if jnp.ndim(weights) != 2 or jnp.shape(weights)[1] != k:
        raise ValueError(f"weights must have shape (B, K={k}), got {jnp.shape(weights)}.")


def removal_candidates(
    weights: chex.Array, active: chex.Array, threshold: float = 1e-3
) -> chex.Array:
    """Active slots whose context-averaged weight is below `threshold`.

    Args:
        weights: (B, K) mixture weights (0 for inactive slots), e.g. exp(gmm.log_weights(...)).
        active: (K,) bool mask.
        threshold: weight threshold.

    Returns:
        (K,) bool.
    """
    _check_weights(weights, active)
    return active & (jnp.mean(weights, axis=0) < threshold)


def update_removal(
    state: ComponentState, weights: chex.Array, threshold: float = 1e-3, patience: int = 3
) -> tuple[ComponentState, chex.Array]:
    """One removal check: count low-weight checks and deactivate slots that reach `patience`.

    A slot's counter grows by one at each check where its average weight is below `threshold`
    and resets to 0 otherwise; it is removed when the counter reaches `patience`. If that would
    remove every active slot, the one with the largest average weight is kept.

    Args:
        state: current component state.
        weights: (B, K) mixture weights on the check's contexts.
        threshold: weight threshold (default 1e-3, docs/math.md §6.2).
        patience: number of consecutive low checks before removal (>= 1).

    Returns:
        (new state, removed (K,) bool).
    """
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}.")
    low = removal_candidates(weights, state.active, threshold)
    grace = in_grace(state)  # newborns age by one check and are never removed
    count = jnp.where(grace | low, state.low_weight_count + 1, 0)
    remove = (count >= patience) & ~grace
    avg = jnp.mean(weights, axis=0)
    best = jnp.argmax(jnp.where(state.active, avg, -jnp.inf))
    none_left = ~jnp.any(state.active & ~remove)
    remove = remove & ~(none_left & (jnp.arange(remove.shape[0]) == best))
    new_state = state.replace(
        active=state.active & ~remove,
        low_weight_count=jnp.where(remove, 0, count).astype(jnp.int32),
        num_removed=state.num_removed + jnp.sum(remove.astype(jnp.int32)),
    )
    return new_state, remove


# --------------------------------------------------------------------------------------------
# Candidates and initial scale
# --------------------------------------------------------------------------------------------


def vips_score(log_p: chex.Array, log_q: chex.Array, threshold: float) -> chex.Array:
    """VIPS adding score log p - max(max_n log q - threshold, log q) per context.

    docs/math.md §6.4 (VIPS's adding score, Arenz et al.; the form of their gmmvi code).

    Args:
        log_p: (N, B) target log-density of the candidates.
        log_q: (N, B) mixture log-density of the candidates.
        threshold: the VIPS threshold (e.g. cycling through 5000, 1000, 500, 200, 100, 50).

    Returns:
        (N, B) scores.
    """
    chex.assert_equal_shape((log_p, log_q))
    floor = jnp.max(log_q, axis=0, keepdims=True) - threshold
    return log_p - jnp.maximum(floor, log_q)


def select_best_candidates(points: chex.Array, scores: chex.Array) -> tuple[chex.Array, chex.Array]:
    """Per context, the candidate with the highest score (NaN scores count as -inf).

    Args:
        points: (N, B, d) candidates.
        scores: (N, B) scores, e.g. log p - log q on SIR samples.

    Returns:
        best points (B, d) and their scores (B,).
    """
    if jnp.ndim(points) != 3 or jnp.shape(scores) != jnp.shape(points)[:2]:
        raise ValueError(
            f"points must be (N, B, d) and scores (N, B); got {jnp.shape(points)}, "
            f"{jnp.shape(scores)}."
        )
    scores = jnp.where(jnp.isnan(scores), -jnp.inf, scores)
    idx = jnp.argmax(scores, axis=0)  # (B,)
    best = jnp.take_along_axis(points, idx[None, :, None], axis=0)[0]
    return best, jnp.take_along_axis(scores, idx[None], axis=0)[0]


def entropy_matching_std(params: gmm.GMMParams, active: chex.Array) -> chex.Array:
    """Isotropic std whose Gaussian has the average entropy of the active components.

    VIPS's entropy matching (docs/math.md §6.4): std = exp((H_des - H_0) / d), H_des the mean
    entropy over contexts and active slots, H_0 = d/2 (1 + log 2 pi) the entropy of N(0, I).

    Returns:
        () std.
    """
    _, k, d = gmm.check_params(params)
    active = gmm.check_active(active, k)
    entropies = gmm.gaussian_entropy(params.chols)  # (B, K)
    mask = jnp.broadcast_to(active, entropies.shape)
    h_des = jnp.sum(jnp.where(mask, entropies, 0.0)) / jnp.maximum(jnp.sum(mask), 1)
    h_0 = 0.5 * d * (1.0 + gmm.LOG_2PI)
    return jnp.exp((h_des - h_0) / d)


def first_free_slot(active: chex.Array) -> tuple[chex.Array, chex.Array]:
    """Lowest inactive slot index () int32 and whether one exists () bool."""
    free = ~jnp.asarray(active, bool)
    return jnp.argmax(free).astype(jnp.int32), jnp.any(free)


# --------------------------------------------------------------------------------------------
# Adding
# --------------------------------------------------------------------------------------------


def _ridge_fit(
    features: chex.Array, targets: chex.Array, ridge: float
) -> tuple[chex.Array, chex.Array]:
    """Ridge regression targets ~ features @ w + b (the bias column is penalised as well).

    Args:
        features: (B, H).
        targets: (B, m).
        ridge: penalty relative to the mean squared feature norm.

    Returns:
        w (H, m), b (m,).
    """
    n, h = features.shape
    design = jnp.concatenate([features, jnp.ones((n, 1), features.dtype)], axis=1)
    scale = jnp.sum(jnp.square(design)) / n
    lam = ridge * scale + jnp.finfo(design.dtype).tiny
    if n < h + 1:  # dual form: (H+1) x (H+1) system replaced by B x B
        gram = design @ design.T + lam * jnp.eye(n, dtype=design.dtype)
        theta = design.T @ jnp.linalg.solve(gram, targets)
    else:
        gram = design.T @ design + lam * jnp.eye(h + 1, dtype=design.dtype)
        theta = jnp.linalg.solve(gram, design.T @ targets)
    return theta[:-1], theta[-1]


def _fit_slot_mean(module, variables, component_features, slot, target_means, ridge):
    target_pre = networks.mean_to_preactivation(
        target_means, module.lower, module.upper, module.mean_squash
    )
    offset = jnp.mean(target_pre, axis=0)
    features = jnp.take(component_features, slot, axis=1)  # (B, H)
    w, b = _ridge_fit(features, target_pre - offset, ridge)
    placed = slot_layout.read(variables, slot).with_mean_head(w, b).replace(mean_offset=offset)
    return slot_layout.write(variables, slot, placed)


def _refine_slot_mean(module, variables, contexts, slot, target_means, steps, learning_rate):
    """Adam steps on the whole MLP of one slot (per_component) towards the target means.

    The loss is the mean squared error in units of the box half-range. Only the slot's own
    parameters are read and written; its diagonal / off-diagonal heads are reset afterwards.
    """
    net = slot_layout.component_net(module)
    own = slot_layout.read(variables, slot)
    _, half = networks.box_center_half_range(module.lower, module.upper)

    def loss_fn(p):
        pre = net.apply({"params": p}, contexts)[1] + own.mean_offset
        mean = networks.preactivation_to_mean(pre, module.lower, module.upper, module.mean_squash)
        return jnp.mean(jnp.sum(jnp.square((mean - target_means) / half), axis=-1))

    optimiser = optax.adam(learning_rate)

    def step(_, carry):
        p, opt_state = carry
        updates, opt_state = optimiser.update(jax.grad(loss_fn)(p), opt_state)
        return optax.apply_updates(p, updates), opt_state

    init = (own.component, optimiser.init(own.component))
    component, _ = jax.lax.fori_loop(0, steps, step, init)
    return slot_layout.write(variables, slot, own.replace(component=component))


def _place_slot_cholesky(module, variables, slot, std):
    std = jnp.maximum(std, module.min_std * (1.0 + 1e-3))
    raw = gmm.raw_from_diag(std, jnp.asarray(module.init_std), module.min_std)
    raw = jnp.broadcast_to(raw, (module.dim,))
    placed = slot_layout.read(variables, slot).with_zero_covariance_heads()
    return slot_layout.write(variables, slot, placed.replace(diag_offset=raw))


def _place_slot_logit(variables, logits, active, slot, init_weight):
    """Copies the donor slot's gate column and offset (+ log(w / (1 - w))) to `slot`."""
    log_w = jax.nn.log_softmax(jnp.where(active, logits, -jnp.inf), axis=-1)  # (B, K)
    donor = jnp.argmax(jnp.where(active, jnp.mean(log_w, axis=0), -jnp.inf))
    source = slot_layout.read(variables, donor)
    placed = slot_layout.read(variables, slot).replace(
        gate_kernel=source.gate_kernel,
        gate_bias=source.gate_bias,
        logit_offset=source.logit_offset + math.log(init_weight / (1.0 - init_weight)),
    )
    return slot_layout.write(variables, slot, placed)


def _reinit_slot(module, variables, contexts, slot, key):
    fresh = slot_layout.read(module.init(key, contexts[:1]), slot)
    own = slot_layout.read(variables, slot)
    return slot_layout.write(variables, slot, own.replace(component=fresh.component))


def add_component(
    module: networks.ConditionalGMM,
    variables: dict,
    state: ComponentState,
    contexts: chex.Array,
    target_means: chex.Array,
    std: chex.Array,
    *,
    init_weight: float,
    fit_steps: int,
    grace_checks: int,
    ridge: float = 1e-3,
    learning_rate: float = 1e-2,
    reinit_key: chex.PRNGKey | None = None,
) -> tuple[dict, ComponentState, chex.Array, chex.Array]:
    """Places a new component in the lowest free slot.

    A no-op (`added` False, variables and state returned unchanged) if every slot is active or
    if the fitted variables are not finite (NaN / inf target points, std or contexts).

    Args:
        module: the network (static; close over it or pass it with functools.partial under jit).
        variables: {"params": ..., "slots": ...} of `module`.
        state: component state; the new slot becomes active, its counter is reset.
        contexts: (B, d_c) contexts on which the slot is fitted.
        target_means: (B, d) where the new mean should be for each context (with tanh squash,
            clipped into the box).
        std: () isotropic std of the new component (e.g. `entropy_matching_std`); clamped to
            just above `module.min_std`.
        init_weight: the new component's largest weight in the mixture (reached where the donor
            slot holds all the weight; see the module docstring), in (0, 1).
        ridge: ridge penalty of the closed-form mean fit, relative to the mean squared feature norm.
            Larger values fit the points less exactly but extrapolate more smoothly to other
            contexts (with B <= H the fit interpolates as ridge -> 0).
        fit_steps: Adam steps refining the mean on the slot's whole MLP ("per_component" only;
            static under jit). 0 keeps the closed-form head fit alone.
        learning_rate: Adam learning rate of those steps.
        reinit_key: if given and the architecture is "per_component", the slot's whole component
            MLP is re-drawn from its initialiser first (fresh random features instead of a
            removed component's trained ones).
        grace_checks: the newborn's grace period in removal checks (its removal counter starts
            at -grace_checks; see `in_grace`). 0: none.

    Returns:
        (variables, state, slot () int32, added () bool). Only the new slot's component
        parameters, its three slot offsets and its column of the gate head change.
    """
    if not 0.0 < init_weight < 1.0:
        raise ValueError(f"init_weight must be in (0, 1), got {init_weight}.")
    b, d = jnp.shape(contexts)[0], module.dim
    if jnp.shape(target_means) != (b, d):
        raise ValueError(
            f"target_means must have shape (B={b}, d={d}), got {jnp.shape(target_means)}."
        )
    slot, has_free = first_free_slot(state.active)
    new = variables
    if reinit_key is not None and module.architecture == "per_component":
        new = _reinit_slot(module, new, contexts, slot, reinit_key)
    _, component_features = module.apply(new, contexts, method=module.head_features)
    logits = module.apply(new, contexts).logits
    new = _fit_slot_mean(module, new, component_features, slot, target_means, ridge)
    if fit_steps > 0 and module.architecture == "per_component":
        new = _refine_slot_mean(module, new, contexts, slot, target_means, fit_steps, learning_rate)
    new = _place_slot_cholesky(module, new, slot, std)
    new = _place_slot_logit(new, logits, state.active, slot, init_weight)
    finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(new)]))
    added = has_free & finite
    new = pytree.select(added, new, variables)
    added_state = state.replace(
        active=state.active.at[slot].set(True),
        low_weight_count=state.low_weight_count.at[slot].set(-grace_checks),
        num_added=state.num_added + 1,
    )
    new_state = pytree.select(added, added_state, state)
    return new, new_state, slot, added
