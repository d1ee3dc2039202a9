"""Component adding and removal: the jitted steps (static shapes) and `make_adapt`, the host-side
schedule that calls them between train steps.

Adding (docs/math.md §5.2, §6.4): per context, N candidates are drawn from a
defensive proposal — the current mixture mixed with a uniform distribution over the target's box,
so that mass the mixture misses can be found — weighted by p / proposal and resampled (SIR). Among
the resampled points the VIPS score log p - max(max log q - threshold, log q) picks, per context,
the point the mixture explains worst; if the context-average of these scores exceeds
`components.add_min_score` (nats), a free slot is fitted through these points with a small
weight and the entropy-matching initial scale. Its trust region starts fresh, the old model is
reset to the current one (the projection is inactive for the next step) and, with
`components.reset_optimizer`, the slot's Adam moments start at zero.

Removal: a slot whose context-averaged weight stays below the threshold for `patience`
consecutive checks is switched off; and a redundant slot — one whose merge into the component
that best explains its samples costs less than `merge_tolerance` nats of ELBO — is merged away
(one per check). Weight alone never prunes duplicates: two copies of one mode keep splitting its
mass, since the VIPS weight step leaves equal rewards unchanged.
"""

import math
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from avips_jax import components, gmm, networks, pytree, sir, slot_layout, trust_region
from avips_jax.settings import Settings
from avips_jax.streams import Stream
from avips_jax.targets import Target
from avips_jax.train import TrainState

Metrics = dict[str, chex.Array]


def _proposal_candidates(
    params: gmm.GMMParams, active, target: Target, key, num: int, uniform_fraction: float
) -> tuple[chex.Array, chex.Array]:
    """Draws (N, B, d) candidates from (1-f) q + f U(box) and returns them with log proposal."""
    b = params.num_contexts
    n_uni = int(round(num * uniform_fraction))
    n_mix = num - n_uni
    key_mix, key_uni = jax.random.split(key)
    lower, upper = jnp.asarray(target.lower), jnp.asarray(target.upper)
    parts = []
    if n_mix:
        parts.append(gmm.sample(params, active, key_mix, n_mix)[0])
    if n_uni:
        u = jax.random.uniform(key_uni, (n_uni, b, target.dim), dtype=params.means.dtype)
        parts.append(lower + (upper - lower) * u)
    x = jax.lax.stop_gradient(jnp.concatenate(parts, axis=0))
    log_q = gmm.log_prob(params, active, x)
    inside = jnp.all((x >= lower) & (x <= upper), axis=-1)
    log_uniform = jnp.where(inside, -float(np.sum(np.log(target.upper - target.lower))), -jnp.inf)
    terms = []
    if n_mix:
        terms.append(math.log(n_mix / num) + log_q)
    if n_uni:
        terms.append(math.log(n_uni / num) + log_uniform)
    return x, jax.nn.logsumexp(jnp.stack(terms), axis=0)


def reset_slot_moments(opt_state: optax.OptState, params: dict, slot: chex.Array) -> optax.OptState:
    """Zeroes the Adam moments (mu, nu) of one slot's parameters (`slot_layout.slot_mask`).

    A reborn slot would otherwise inherit the moments of the component that last lived there,
    and its first steps would follow that component's gradient history. Works on any optax state
    (chains, multi_transform's masked inner states): every `ScaleByAdamState` in it is edited,
    matching its moments to `params` by key path. The step counts are left as they are.
    """
    mask = slot_layout.slot_mask(params, jnp.arange(slot_layout.num_slots(params)) == slot)
    by_path = dict(jax.tree_util.tree_leaves_with_path(mask))

    def zero_slot(path, moment):
        return jnp.where(by_path[path], 0.0, moment) if path in by_path else moment

    def reset(node):
        if isinstance(node, optax.ScaleByAdamState):
            return node._replace(
                mu=jax.tree_util.tree_map_with_path(zero_slot, node.mu),
                nu=jax.tree_util.tree_map_with_path(zero_slot, node.nu),
            )
        return node

    is_adam = lambda node: isinstance(node, optax.ScaleByAdamState)
    return jax.tree.map(reset, opt_state, is_leaf=is_adam)


def make_add_step(
    settings: Settings, module: networks.ConditionalGMM, target: Target
) -> Callable[[TrainState, chex.Array, chex.PRNGKey], tuple[TrainState, Metrics]]:
    """Jitted `(state, contexts (B, d_c), key) -> (state, info)` adding one component if a slot
    is free (otherwise the state is returned unchanged and info["added"] is False)."""
    s, cc, p = settings.sir, settings.components, settings.projection
    if cc.refine_iterations and not target.can_refine_points:
        raise ValueError(
            f"components.refine_iterations = {cc.refine_iterations} needs a target that can "
            f"refine points; {target.name!r} cannot (set it to 0)"
        )

    def add_step(state: TrainState, contexts: chex.Array, key: chex.PRNGKey):
        key_prop, key_sir, key_reinit = jax.random.split(key, 3)
        params = module.apply(state.variables, contexts)
        active = state.active
        x, log_prop = _proposal_candidates(
            params, active, target, key_prop, s.num_candidates, s.uniform_fraction
        )
        log_p = target.log_prob(x, contexts[None])
        if s.enabled:
            resampled = sir.sir(key_sir, x, log_p, log_prop, s.num_resampled)
            points, points_log_p, ess = resampled.samples, resampled.log_p, resampled.ess
        else:  # ablation: score every proposal draw, no importance resampling
            points, points_log_p = x, log_p
            ess = sir.effective_sample_size(sir.log_importance_weights(log_p, log_prop))
        if cc.refine_iterations:  # newborns on (near-)exact solutions, scored where they land
            points = target.refine_points(points, contexts[None], cc.refine_iterations)
            points_log_p = target.log_prob(points, contexts[None])
        log_q = gmm.log_prob(params, active, points)
        score = components.vips_score(points_log_p, log_q, cc.score_threshold)
        best, best_score = components.select_best_candidates(points, score)
        std = components.entropy_matching_std(params, active)
        # Only add where the mixture clearly misses mass: a VIPS-style trigger on the score.
        needed = jnp.mean(best_score) > cc.add_min_score
        variables, comp_state, slot, added = components.add_component(
            module,
            state.variables,
            state.components,
            contexts,
            best,
            std,
            init_weight=cc.init_weight,
            fit_steps=cc.fit_steps,
            reinit_key=key_reinit,
            grace_checks=cc.grace_checks,
        )
        added = added & needed
        variables = pytree.select(added, variables, state.variables)
        comp_state = pytree.select(added, comp_state, state.components)
        tr = trust_region.reset_slot(state.trust_region, slot, p.eps_mean, p.eps_cov)
        tr = pytree.select(added, tr, state.trust_region)
        opt_state = state.opt_state
        if cc.reset_optimizer:
            reset = reset_slot_moments(opt_state, state.params, slot)
            opt_state = pytree.select(added, reset, opt_state)
        new_state = state.replace(
            params=variables["params"],
            old_params=pytree.select(added, variables["params"], state.old_params),
            opt_state=opt_state,
            slots=variables[networks.SLOTS],
            trust_region=tr,
            components=comp_state,
        )
        info = {
            "added": added,
            "slot": slot,
            "score": jnp.mean(best_score),
            "sir_ess": jnp.mean(ess),
        }
        return new_state, info

    return jax.jit(add_step)


def merge_costs(
    params: gmm.GMMParams, active: chex.Array, x: chex.Array, ids: chex.Array, log_p: chex.Array
) -> tuple[chex.Array, chex.Array]:
    """ELBO lost by merging each component into the component that best explains its samples.

    Merging slot j into its partner i moves w_j onto w_i (per context) and drops j. The ELBO of
    the merged mixture q_m is estimated from the full mixture's samples by self-normalised
    importance weights q_m / q, so it is precise exactly when the merge changes little.

    Args:
        params: mixture on B contexts.
        active: (K,) bool.
        x: (N, B, d) ancestral samples of the mixture, ids (N, B) their components.
        log_p: (N, B) target log-density of x.

    Returns:
        cost (K,) context-averaged ELBO(q) - ELBO(q_m) (inf for inactive slots) and partner (K,).
    """
    k = params.num_components
    log_w = gmm.log_weights(params, active)  # (B, K)
    comp = gmm.component_log_probs(params, x)  # (N, B, K)
    log_q = jax.nn.logsumexp(log_w + comp, axis=-1)
    elbo = jnp.mean(log_p - log_q, axis=0)  # (B,)
    slots = jnp.arange(k)

    def cost(j):
        own = ids == j
        fit = (
            jnp.sum(jnp.where(own[..., None], comp, 0.0), 0)
            / jnp.maximum(jnp.sum(own, 0), 1)[:, None]
        )
        fit = jnp.where(active & (slots != j), jnp.mean(fit, 0), -jnp.inf)
        partner = jnp.argmax(fit)
        w = jnp.exp(log_w)
        w_m = jnp.where(slots == partner, w + w[:, j][:, None], jnp.where(slots == j, 0.0, w))
        log_q_m = jax.nn.logsumexp(jnp.where(w_m > 0, jnp.log(w_m), -jnp.inf) + comp, axis=-1)
        iw = jax.nn.softmax(log_q_m - log_q, axis=0)
        elbo_m = jnp.sum(iw * (log_p - log_q_m), axis=0)
        return jnp.mean(elbo - elbo_m), partner

    costs, partners = jax.vmap(cost)(slots)
    has_partner = jnp.sum(active) > 1
    return jnp.where(active & has_partner, costs, jnp.inf), partners


def make_remove_step(
    settings: Settings, module: networks.ConditionalGMM, target: Target
) -> Callable[[TrainState, chex.Array, chex.PRNGKey], tuple[TrainState, chex.Array]]:
    """Jitted `(state, contexts (B, d_c), key, merge: static bool) -> (state, removed (K,) bool)`:
    one removal check.

    Two rules: (1) a slot whose context-averaged weight stayed below `remove_threshold` for
    `remove_patience` checks is switched off; (2) redundancy: the slot whose merge into its
    nearest component costs the least ELBO is switched off if that cost is below
    `merge_tolerance` nats (its weight goes to the partner through the partner's logit offset).
    """
    cc = settings.components

    def remove_step(state: TrainState, contexts: chex.Array, key: chex.PRNGKey, merge: bool):
        params = module.apply(state.variables, contexts)
        weights = jnp.exp(gmm.log_weights(params, state.active))
        comp_state, removed = components.update_removal(
            state.components, weights, cc.remove_threshold, cc.remove_patience
        )
        slots = state.slots
        if merge:
            active = comp_state.active
            x, ids = gmm.sample(params, active, key, cc.merge_samples)
            x = jax.lax.stop_gradient(x)
            costs, partners = merge_costs(
                params, active, x, ids, target.log_prob(x, contexts[None])
            )
            j = jnp.argmin(costs)
            do_merge = costs[j] < cc.merge_tolerance
            partner = partners[j]
            w = jnp.exp(gmm.log_weights(params, active))
            shift = jnp.mean(jnp.log1p(w[:, j] / jnp.maximum(w[:, partner], 1e-30)))
            delta = jnp.where(jnp.arange(active.shape[0]) == partner, shift, 0.0)
            slots = slot_layout.add_to_logit_offsets(slots, jnp.where(do_merge, delta, 0.0))
            merged = do_merge & (jnp.arange(active.shape[0]) == j)
            comp_state = comp_state.replace(
                active=active & ~merged,
                num_removed=comp_state.num_removed + do_merge.astype(jnp.int32),
            )
            removed = removed | merged
        return state.replace(components=comp_state, slots=slots), removed

    return jax.jit(remove_step, static_argnums=3)


Events = list[dict]


def make_adapt(
    settings: Settings, module: networks.ConditionalGMM, target: Target
) -> Callable[[int, TrainState, chex.Array, chex.PRNGKey], tuple[TrainState, Events]]:
    """`adapt(state, contexts, step_key, step) -> (state, new events)`, the loop's adaptation
    hook: after train step index `step` (0-based), a removal check every
    `components.check_every` steps (merging after `merge_after` of the run, where
    `merge_tolerance` > 0), then an adding attempt every `add_every` steps until `add_until` of
    the run or the gate-refit phase. Their keys are `step_key` folded with `Stream.REMOVE` and
    `Stream.ADD`. Events: {"step", "event": "removed" | "added", "slot"}."""
    t, cc = settings.schedule, settings.components
    add_fn = make_add_step(settings, module, target) if cc.add else None
    remove_fn = make_remove_step(settings, module, target) if cc.remove else None
    add_until = min(cc.add_until * t.num_steps, t.gate_refit_start)

    def adapt(state, contexts, step_key, step):
        events = []
        done = step + 1
        if remove_fn is not None and done % cc.check_every == 0:
            merge = cc.merge_tolerance > 0 and done > cc.merge_after * t.num_steps
            key = jax.random.fold_in(step_key, Stream.REMOVE)
            state, removed = remove_fn(state, contexts, key, merge)
            for slot in np.flatnonzero(np.asarray(removed)):
                events.append({"step": done, "event": "removed", "slot": int(slot)})
        if add_fn is not None and done % cc.add_every == 0 and done <= add_until:
            state, info = add_fn(state, contexts, jax.random.fold_in(step_key, Stream.ADD))
            if bool(info["added"]):
                events.append({"step": done, "event": "added", "slot": int(info["slot"])})
        return state, events

    return adapt
