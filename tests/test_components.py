"""Tests of avips_jax.components: removal bookkeeping and placing new components."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avips_jax import components, gmm, networks

K, D, DC, B = 5, 3, 2, 6
LOWER, UPPER = -3.0 * np.ones(D), 3.0 * np.ones(D)


pytestmark = pytest.mark.usefixtures("fast_compiles")


# --------------------------------------------------------------------------------------------
# Removal
# --------------------------------------------------------------------------------------------

# add_component has no defaults for what the config sets (components.init_weight, fit_steps,
# grace_steps): these are the values the tests were written for.
_ADD = dict(init_weight=1e-3, fit_steps=100, grace_checks=0)


def weights_with(low_slots, active, b=4):
    """(b, K) weights: 1e-4 on `low_slots`, the rest shared by the other active slots."""
    w = np.zeros((b, K))
    high = [k for k in range(K) if active[k] and k not in low_slots]
    w[:, list(low_slots)] = 1e-4
    w[:, high] = (1.0 - 1e-4 * len(low_slots)) / max(len(high), 1)
    return jnp.asarray(w)


def test_init_component_state():
    state = components.init_component_state(K, 3)
    np.testing.assert_array_equal(state.active, [True, True, True, False, False])
    assert int(components.num_active(state)) == 3
    with pytest.raises(ValueError, match="num_active"):
        components.init_component_state(K, 0)


def test_removal_candidates():
    active = jnp.array([True, True, False, True, True])
    w = jnp.array([[0.5, 0.0005, 0.0, 0.0, 0.4995], [0.5, 0.0019, 0.0, 0.0, 0.4981]])
    # averages: 0.5, 0.0012, 0, 0, 0.4988 -> only slot 3 (active, average 0) is below 1e-3.
    np.testing.assert_array_equal(
        components.removal_candidates(w, active, 1e-3), [False, False, False, True, False]
    )
    np.testing.assert_array_equal(
        components.removal_candidates(w, active, 2e-3), [False, True, False, True, False]
    )
    with pytest.raises(ValueError, match="weights must have shape"):
        components.removal_candidates(w[:, :3], active)


def test_removal_needs_patience_consecutive_checks():
    state = components.init_component_state(K, 4)
    update = jax.jit(functools.partial(components.update_removal, threshold=1e-3, patience=3))
    low = weights_with({2}, state.active)
    fine = weights_with(set(), state.active)
    for weights in (low, low, fine, low, low):  # the good check in between resets the count
        state, removed = update(state, weights)
        assert not np.any(removed)
    assert bool(state.active[2]) and int(state.low_weight_count[2]) == 2
    state, removed = update(state, low)  # third consecutive low check
    np.testing.assert_array_equal(removed, np.arange(K) == 2)
    np.testing.assert_array_equal(state.active, [True, True, False, True, False])
    assert int(state.num_removed) == 1 and int(state.low_weight_count[2]) == 0


def test_a_newborn_in_its_grace_period_is_not_removed():
    state = components.init_component_state(K, 4)
    state = state.replace(low_weight_count=state.low_weight_count.at[2].set(-2))  # born, g = 2
    update = jax.jit(functools.partial(components.update_removal, threshold=1e-3, patience=3))
    low = weights_with({2}, state.active)
    np.testing.assert_array_equal(components.in_grace(state), np.arange(K) == 2)
    for _ in range(2 + 2):  # the grace checks, then two low checks of the usual patience
        state, removed = update(state, low)
        assert not np.any(removed)
    assert not bool(components.in_grace(state)[2]) and int(state.low_weight_count[2]) == 2
    state, removed = update(state, low)
    np.testing.assert_array_equal(removed, np.arange(K) == 2)


def test_removal_keeps_the_best_component():
    state = components.init_component_state(K, 3)
    w = jnp.asarray(np.tile([4e-4, 9e-4, 1e-4, 0.0, 0.0], (3, 1)))  # all active slots low
    for _ in range(2):
        state, removed = components.update_removal(state, w, threshold=1e-3, patience=2)
    np.testing.assert_array_equal(removed, [True, False, True, False, False])
    np.testing.assert_array_equal(state.active, [False, True, False, False, False])
    state, removed = components.update_removal(state, w, threshold=1e-3, patience=2)
    assert not np.any(removed) and int(components.num_active(state)) == 1


# --------------------------------------------------------------------------------------------
# Candidates and scale
# --------------------------------------------------------------------------------------------


def test_select_best_candidates_and_vips_score():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(7, 4, D))
    scores = rng.normal(size=(7, 4))
    scores[2, 1] = np.nan
    best, best_scores = components.select_best_candidates(points, scores)
    idx = np.nanargmax(scores, axis=0)
    np.testing.assert_allclose(best, points[idx, np.arange(4)])
    np.testing.assert_allclose(best_scores, scores[idx, np.arange(4)])
    log_p = np.array([[0.0], [1.0], [2.0]])
    log_q = np.array([[-100.0], [-1.0], [0.0]])
    # floor = max log q - 50 = -50: scores 0 - (-50), 1 - (-1), 2 - 0.
    np.testing.assert_allclose(
        components.vips_score(log_p, log_q, 50.0), [[50.0], [2.0], [2.0]], rtol=1e-6
    )
    with pytest.raises(ValueError, match="points must be"):
        components.select_best_candidates(points, scores[:, :3])


def test_entropy_matching_std():
    chols = np.tile(0.3 * np.eye(D), (2, K, 1, 1))
    chols[:, 4] = 5.0 * np.eye(D)  # inactive: ignored
    chols[1, 0] = np.diag([0.1, 0.2, 0.4])
    params = gmm.GMMParams(np.zeros((2, K)), np.zeros((2, K, D)), chols)
    active = np.array([True, True, True, False, False])
    std = float(components.entropy_matching_std(params, active))
    mean_entropy = np.mean(np.asarray(gmm.gaussian_entropy(chols))[:, :3])
    np.testing.assert_allclose(gmm.gaussian_entropy(std * np.eye(D)), mean_entropy, rtol=1e-6)
    all_same = gmm.GMMParams(
        np.zeros((2, K)), np.zeros((2, K, D)), np.tile(0.3 * np.eye(D), (2, K, 1, 1))
    )
    np.testing.assert_allclose(components.entropy_matching_std(all_same, active), 0.3, rtol=1e-6)


def test_first_free_slot():
    slot, has_free = components.first_free_slot(jnp.array([True, False, True, False, True]))
    assert int(slot) == 1 and bool(has_free)
    _, has_free = components.first_free_slot(jnp.ones(K, bool))
    assert not bool(has_free)


# --------------------------------------------------------------------------------------------
# Adding
# --------------------------------------------------------------------------------------------


def target_points(c):
    """A smooth per-context target in the box."""
    return jnp.stack([jnp.sin(2 * c[:, 0]), c[:, 1] ** 2 - 1.0, 0.5 * c[:, 0] * c[:, 1]], -1)


@functools.cache
def setup_net(arch):
    """Module, variables (5 slots, 1 and 4 free), state and contexts; shared by the tests."""
    module = networks.make_gmm_network(
        K, D, LOWER, UPPER, architecture=arch, component_hidden=(32, 32), gate_hidden=(32,)
    )
    init = functools.partial(networks.init_gmm_network, module=module, context_dim=DC)
    variables = jax.jit(init)(jax.random.key(0))
    state = components.init_component_state(K, 3)
    state = state.replace(active=jnp.array([True, False, True, True, False]))
    c = jax.random.uniform(jax.random.key(1), (B, DC), minval=-1.0, maxval=1.0)
    return module, variables, state, c


@functools.cache
def jitted_add(arch):
    """One compiled add_component per architecture (ridge small: interpolate the targets)."""
    module = setup_net(arch)[0]
    return jax.jit(functools.partial(components.add_component, module, ridge=1e-6, **_ADD))


@pytest.mark.parametrize(
    "arch,reinit", [("per_component", False), ("shared_trunk", False), ("per_component", True)]
)
def test_add_component_places_slot(arch, reinit):
    module, variables, state, c = setup_net(arch)
    targets = target_points(c)
    std, w_new = 0.4, 1e-3
    key = jax.random.key(7) if reinit else None
    new_vars, new_state, slot, added = jitted_add(arch)(
        variables, state, c, targets, std, reinit_key=key
    )
    assert bool(added) and int(slot) == 1
    np.testing.assert_array_equal(new_state.active, [True, True, True, True, False])
    assert int(new_state.num_added) == 1

    before, after = module.apply(variables, c), module.apply(new_vars, c)
    # The mean passes through the per-context targets (before it sat at its random offset).
    assert np.max(np.linalg.norm(before.means[:, 1] - targets, axis=-1)) > 0.5
    assert np.max(np.linalg.norm(after.means[:, 1] - targets, axis=-1)) < 0.05
    np.testing.assert_allclose(
        after.chols[:, 1], np.broadcast_to(std * np.eye(D), (B, D, D)), atol=1e-6
    )
    logw_new = np.asarray(gmm.log_weights(after, new_state.active))
    logw_old = np.asarray(gmm.log_weights(before, state.active))
    # The donor is the active slot with the largest mean log-weight; the new weight is
    # r w_d / (1 + r w_d) with r = w / (1 - w).
    donor = [0, 2, 3][int(np.argmax(logw_old[:, [0, 2, 3]].mean(0)))]
    r = w_new / (1 - w_new)
    w_d = np.exp(logw_old[:, donor])
    np.testing.assert_allclose(np.exp(logw_new[:, 1]), r * w_d / (1 + r * w_d), rtol=1e-4)
    others = np.array([True, False, True, True, True])
    for name in ("logits", "means", "chols"):
        np.testing.assert_array_equal(
            getattr(after, name)[:, others], getattr(before, name)[:, others]
        )
    np.testing.assert_allclose(  # other weights shrink by 1 - w_new(c) through normalisation
        np.exp(logw_new[:, [0, 2, 3]]),
        np.exp(logw_old[:, [0, 2, 3]]) * (1 - np.exp(logw_new[:, 1:2])),
        rtol=1e-3,
    )


@pytest.mark.parametrize("arch", ["per_component", "shared_trunk"])
def test_added_weight_never_exceeds_init_weight(arch):
    # On contexts far from the ones it was placed on, too: a fit of the gate column to the B
    # contexts extrapolated to weights near 1 elsewhere.
    module, variables, state, c = setup_net(arch)
    w_new = 0.05
    add = jax.jit(
        functools.partial(components.add_component, module, **{**_ADD, "init_weight": w_new})
    )
    new_vars, new_state, slot, added = add(variables, state, c, target_points(c), 0.4)
    assert bool(added)
    fresh = jax.random.uniform(jax.random.key(9), (512, DC), minval=-4.0, maxval=4.0)
    for contexts in (c, fresh):
        logw = gmm.log_weights(module.apply(new_vars, contexts), new_state.active)
        w = np.exp(np.asarray(logw)[:, int(slot)])
        assert np.all(w <= w_new * (1 + 1e-5)), w.max()
    # Somewhere it reaches a good share of the bound (it is not placed at zero weight).
    assert (
        np.max(
            np.exp(
                np.asarray(gmm.log_weights(module.apply(new_vars, c), new_state.active))[
                    :, int(slot)
                ]
            )
        )
        > 0.2 * w_new
    )


def test_add_without_free_slot_is_noop():
    module, variables, state, c = setup_net("shared_trunk")
    full = state.replace(active=jnp.ones(K, bool))
    new_vars, new_state, _, added = jitted_add("shared_trunk")(
        variables, full, c, target_points(c), 0.4
    )
    assert not bool(added)
    for a, b in zip(jax.tree.leaves(new_vars), jax.tree.leaves(variables), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(full), strict=True):
        np.testing.assert_array_equal(a, b)


def test_add_with_nan_targets_is_noop():
    _, variables, state, c = setup_net("shared_trunk")
    targets = target_points(c).at[2, 1].set(jnp.nan)
    new_vars, new_state, _, added = jitted_add("shared_trunk")(variables, state, c, targets, 0.4)
    assert not bool(added)
    for a, b in zip(jax.tree.leaves(new_vars), jax.tree.leaves(variables), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(new_state.active, state.active)


def test_add_component_errors():
    module, variables, state, c = setup_net("shared_trunk")
    with pytest.raises(ValueError, match="target_means must have shape"):
        components.add_component(module, variables, state, c, jnp.zeros((B, D + 1)), 0.4, **_ADD)
    with pytest.raises(ValueError, match="init_weight"):
        components.add_component(
            module, variables, state, c, target_points(c), 0.4, **{**_ADD, "init_weight": 1.5}
        )
