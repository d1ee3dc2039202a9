"""The jitted adaptation steps (avips_jax/adaptation.py): adding (optimiser bookkeeping, grace,
refined candidates) and removal by merging (costs checked against a brute-force ELBO)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from avips_jax import adaptation, fit, gmm, networks, slot_layout
from avips_jax.settings import Settings
from experiments.configs import panda as panda_configs
from tests.test_train import _small_config

pytestmark = pytest.mark.usefixtures("fast_compiles")


def _adam_states(opt_state):
    is_adam = lambda node: isinstance(node, optax.ScaleByAdamState)
    return [n for n in jax.tree.leaves(opt_state, is_leaf=is_adam) if is_adam(n)]


def _moments_after_one_step(config):
    _, _, optimizer, state, _ = fit.build(config)
    grads = jax.tree.map(jnp.ones_like, state.params)
    _, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return state, opt_state


def _check_reset(before, after, params, slot):
    one = jnp.arange(slot_layout.num_slots(params)) == slot
    mask = dict(jax.tree_util.tree_leaves_with_path(slot_layout.slot_mask(params, one)))
    checked = 0
    for old, new in zip(_adam_states(before), _adam_states(after), strict=True):
        assert int(new.count) == int(old.count)
        for moments_old, moments_new in ((old.mu, new.mu), (old.nu, new.nu)):
            for (path, m_old), (_, m_new) in zip(
                jax.tree_util.tree_leaves_with_path(moments_old),
                jax.tree_util.tree_leaves_with_path(moments_new),
                strict=True,
            ):
                in_slot = np.asarray(mask[path])
                assert np.all(np.asarray(m_old) != 0)  # every moment was set by the step
                np.testing.assert_array_equal(np.asarray(m_new)[in_slot], 0.0)
                np.testing.assert_array_equal(np.asarray(m_new)[~in_slot], m_old[~in_slot])
                checked += int(in_slot.any())
    assert checked >= 4  # the slot's component leaves and its gate column, in mu and nu


def test_reset_slot_moments_zeroes_exactly_the_slots_entries():
    config = _small_config(**{"model.num_components": 4})
    state, opt_state = _moments_after_one_step(config)
    reset = adaptation.reset_slot_moments(opt_state, state.params, jnp.int32(2))
    _check_reset(opt_state, reset, state.params, 2)


@pytest.mark.slow
def test_add_step_resets_the_new_slots_moments_only_when_asked():
    for reset_optimizer in (True, False):
        config = _small_config(
            **{
                "model.num_components": 4,
                "model.initial_components": 2,
                "components.add_min_score": -1e9,  # always add
                "components.reset_optimizer": reset_optimizer,
            }
        )
        target, module, _, state, _ = fit.build(config)
        _, opt_state = _moments_after_one_step(config)
        state = state.replace(opt_state=opt_state)
        add = adaptation.make_add_step(Settings.from_config(config), module, target)
        contexts = jnp.linspace(-0.5, 0.5, config.train.batch_contexts)[:, None]
        new, info = add(state, contexts, jax.random.PRNGKey(0))
        assert bool(info["added"]) and int(info["slot"]) == 2
        assert networks.GATE in new.params
        if reset_optimizer:
            _check_reset(opt_state, new.opt_state, state.params, 2)
        else:
            for a, b in zip(
                jax.tree.leaves(opt_state), jax.tree.leaves(new.opt_state), strict=True
            ):
                np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # a lever off in every preset; slow for CI's 15-minute budget
def test_a_newborn_keeps_its_gate_column_during_its_grace_period():
    config = _small_config(
        **{
            "model.num_components": 4,
            "model.initial_components": 2,
            "components.add": True,
            "components.add_min_score": -1e9,  # always add
            "components.grace_steps": 250,
            "components.check_every": 100,
        }
    )
    target, module, _, state, step_fn = fit.build(config)
    contexts = jnp.linspace(-0.5, 0.5, config.train.batch_contexts)[:, None]
    state, info = adaptation.make_add_step(Settings.from_config(config), module, target)(
        state, contexts, jax.random.PRNGKey(0)
    )
    assert bool(info["added"]) and int(info["slot"]) == 2
    assert int(state.components.low_weight_count[2]) == -3  # ceil(250 / 100) checks
    head = lambda s: np.asarray(s.params[networks.GATE][networks.GATE_HEAD]["kernel"])
    before = head(state)
    for _ in range(3):
        state, _ = step_fn(state, contexts)
    after = head(state)
    np.testing.assert_array_equal(after[:, 2], before[:, 2])  # frozen
    assert not np.allclose(after[:, :2], before[:, :2])  # the others train


def _newborn_position_errors_mm(refine_iterations: int) -> np.ndarray:
    """Position errors (mm) of the new slot's means on the contexts it was placed for."""
    config = panda_configs.get_config("quick")
    config.model.num_components = 3
    config.model.initial_components = 2
    config.model.component_hidden = (16,)
    config.model.gate_hidden = (16,)
    config.train.batch_contexts = 4
    config.sir.num_candidates = 32
    config.sir.num_resampled = 8
    config.components.add_min_score = -1e9  # always add
    config.components.refine_iterations = refine_iterations
    target, module, _, state, _ = fit.build(config)
    contexts = target.sample_contexts(jax.random.PRNGKey(5), 4)
    new, info = adaptation.make_add_step(Settings.from_config(config), module, target)(
        state, contexts, jax.random.PRNGKey(0)
    )
    assert bool(info["added"]) and int(info["slot"]) == 2
    means = module.apply(new.variables, contexts).means[:, 2]
    return 1e3 * np.asarray(target.position_error(means, contexts))


@pytest.mark.slow  # ~30 s; an option off by default (components.refine_iterations)
def test_refined_candidates_place_the_newborn_on_exact_solutions():
    raw = _newborn_position_errors_mm(0)
    refined = _newborn_position_errors_mm(30)
    assert np.all(np.isfinite(refined))
    # Untrained, the best candidate is 0.2-0.4 m off; refined it is an exact solution, which the
    # slot's fitted mean then passes near (within the fit's 2-20 mm on 4 contexts).
    assert np.max(refined) < 30.0 and np.max(refined) < 0.1 * np.min(raw)


def test_refining_candidates_needs_a_target_that_can_refine():
    config = _small_config(**{"components.refine_iterations": 5})
    target, module, _, _, _ = fit.build(config)
    with pytest.raises(ValueError, match="refine_iterations"):
        adaptation.make_add_step(Settings.from_config(config), module, target)


def _three_component_mixture():
    """One context, d = 2: slots 0 and 1 almost on top of each other, slot 2 far away."""
    chols = jnp.broadcast_to(0.3 * jnp.eye(2), (1, 3, 2, 2))
    means = jnp.array([[[0.0, 0.0], [0.1, 0.0], [3.0, 3.0]]])
    logits = jnp.log(jnp.array([[0.3, 0.3, 0.4]]))
    return gmm.GMMParams(logits=logits, means=means, chols=chols)


def _brute_force_elbo(params, active, log_p_fn, key, n=40_000):
    x, _ = gmm.sample(params, active, key, n)
    return float(jnp.mean(log_p_fn(x) - gmm.log_prob(params, active, x)))


def test_merge_costs_match_a_brute_force_elbo_of_each_merged_mixture():
    params, active = _three_component_mixture(), jnp.array([True, True, True])
    # The target: a mixture whose first two modes lie where slots 0 and 1 are.
    target = gmm.GMMParams(
        logits=jnp.log(jnp.array([[0.6, 0.4]])),
        means=jnp.array([[[0.05, 0.0], [3.0, 3.0]]]),
        chols=jnp.broadcast_to(0.35 * jnp.eye(2), (1, 2, 2, 2)),
    )
    log_p_fn = lambda x: gmm.log_prob(target, jnp.array([True, True]), x)
    x, ids = gmm.sample(params, active, jax.random.PRNGKey(0), 40_000)
    costs, partners = adaptation.merge_costs(params, active, x, ids, log_p_fn(x))
    assert partners.tolist()[:2] == [1, 0]  # the near twins pair up
    elbo = _brute_force_elbo(params, active, log_p_fn, jax.random.PRNGKey(1))
    w = np.exp(np.asarray(gmm.log_weights(params, active)))[0]
    for j in range(3):
        i = int(partners[j])
        w_m = w.copy()
        w_m[i] += w_m[j]
        w_m[j] = 0.0
        merged = params.replace(logits=jnp.log(jnp.asarray(w_m))[None])
        merged_active = active.at[j].set(False)
        elbo_m = _brute_force_elbo(merged, merged_active, log_p_fn, jax.random.PRNGKey(2 + j))
        np.testing.assert_allclose(float(costs[j]), elbo - elbo_m, atol=0.03, err_msg=f"slot {j}")
    assert float(costs[0]) < 0.05 and float(costs[2]) > 0.3  # twins merge cheaply, slot 2 not


def test_merge_costs_are_infinite_for_inactive_slots_and_a_lone_component():
    params = _three_component_mixture()
    x, ids = gmm.sample(params, jnp.array([True, False, True]), jax.random.PRNGKey(0), 64)
    costs, _ = adaptation.merge_costs(
        params, jnp.array([True, False, True]), x, ids, jnp.zeros(x.shape[:2])
    )
    assert np.isinf(float(costs[1])) and np.isfinite(np.asarray(costs)[[0, 2]]).all()
    lone = jnp.array([False, False, True])
    x, ids = gmm.sample(params, lone, jax.random.PRNGKey(0), 64)
    costs, _ = adaptation.merge_costs(params, lone, x, ids, jnp.zeros(x.shape[:2]))
    assert np.isinf(np.asarray(costs)).all()


def test_remove_step_merges_the_cheapest_slot_into_its_partner():
    c = _small_config(
        **{
            "components.merge_tolerance": 1e6,  # every merge is cheap enough: one per check
            "components.remove_threshold": 0.0,  # no removal by weight
        }
    )
    target, module, _, state, _ = fit.build(c)
    contexts = target.sample_contexts(jax.random.PRNGKey(3), c.train.batch_contexts)
    remove = adaptation.make_remove_step(Settings.from_config(c), module, target)
    before = jax.device_get(state)
    w_before = np.asarray(
        jnp.exp(gmm.log_weights(module.apply(state.variables, contexts), state.active))
    )
    state, removed = remove(state, contexts, jax.random.PRNGKey(4), True)
    removed = np.asarray(removed)
    assert removed.sum() == 1
    j = int(np.flatnonzero(removed)[0])
    assert not bool(state.active[j]) and int(state.components.num_removed) == 1
    w_after = np.asarray(
        jnp.exp(gmm.log_weights(module.apply(state.variables, contexts), state.active))
    )
    assert w_after[:, j].max() == 0.0
    # The merged weight went to one partner: its weight grew by about the removed slot's.
    grown = w_after.mean(0) - w_before.mean(0)
    partner = int(np.argmax(grown))
    assert partner != j and grown[partner] > 0.5 * w_before[:, j].mean()
    # Without merging, the same state and key remove nothing.
    _, removed = remove(jax.tree.map(jnp.asarray, before), contexts, jax.random.PRNGKey(4), False)
    assert not np.asarray(removed).any()
