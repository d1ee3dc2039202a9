"""Tests of the per-component adaptive trust-region bounds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avips_jax import trust_region as tr

LIMITS = dict(min_eps_mean=0.01, max_eps_mean=0.2, min_eps_cov=0.001, max_eps_cov=0.02)
FACTORS = dict(grow=1.1, shrink=0.5)


def update(state, objective, active, **kw):
    """update_trust_region with FACTORS and LIMITS, overridden by kw (it has no defaults)."""
    return tr.update_trust_region(state, objective, active, **{**FACTORS, **LIMITS, **kw})


def test_init_broadcasts_and_has_no_history():
    state = tr.init_trust_region(3, 0.1, 0.01)
    np.testing.assert_allclose(state.eps_mean, [0.1] * 3)
    np.testing.assert_allclose(state.eps_cov, [0.01] * 3)
    assert state.eps_mean.dtype == jnp.float32 and np.all(np.isnan(state.last_objective))
    per_slot = tr.init_trust_region(3, jnp.array([0.1, 0.2, 0.3]), 0.01)
    np.testing.assert_allclose(per_slot.eps_mean, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"eps_mean must be a scalar or of shape \(3,\)"):
        tr.init_trust_region(3, jnp.ones(2), 0.01)
    with pytest.raises(ValueError, match="num_components"):
        tr.init_trust_region(0, 0.1, 0.01)


def test_first_update_only_records_then_grow_and_shrink():
    state = tr.init_trust_region(4, 0.1, 0.01)
    active = jnp.array([True, True, True, False])
    state = update(state, jnp.array([1.0, 1.0, 1.0, 1.0]), active)
    np.testing.assert_allclose(state.eps_mean, [0.1] * 4)
    np.testing.assert_allclose(state.eps_cov, [0.01] * 4)
    np.testing.assert_array_equal(state.last_objective[:3], [1.0] * 3)
    assert np.isnan(state.last_objective[3])  # inactive: nothing recorded
    # Slot 0 improves, slot 1 ties (not an improvement), slot 2 gets worse, slot 3 is inactive.
    state = update(state, jnp.array([2.0, 1.0, 0.5, 9.0]), active)
    np.testing.assert_allclose(state.eps_mean, [0.1 * 1.1, 0.05, 0.05, 0.1], rtol=1e-6)
    np.testing.assert_allclose(state.eps_cov, [0.01 * 1.1, 0.005, 0.005, 0.01], rtol=1e-6)
    np.testing.assert_array_equal(state.last_objective[:3], [2.0, 1.0, 0.5])
    assert np.isnan(state.last_objective[3])


def test_bounds_are_clipped_to_their_limits():
    state = tr.init_trust_region(2, 0.1, 0.01)
    active = jnp.ones(2, bool)
    jitted = jax.jit(update)
    for step in range(12):  # slot 0 improves every time, slot 1 never
        state = jitted(state, jnp.array([float(step), -float(step)]), active)
    np.testing.assert_allclose(state.eps_mean, [0.2, 0.01], rtol=1e-6)
    np.testing.assert_allclose(state.eps_cov, [0.02, 0.001], rtol=1e-6)
    # One step down from the max and one step up from the min.
    state = jitted(state, jnp.array([-100.0, 100.0]), active)
    np.testing.assert_allclose(state.eps_mean, [0.1, 0.011], rtol=1e-6)
    np.testing.assert_allclose(state.eps_cov, [0.01, 0.0011], rtol=1e-6)


def test_vips_factors_and_non_finite_objective():
    state = tr.init_trust_region(3, 0.5, 0.05)
    active = jnp.ones(3, bool)
    kw = dict(grow=1.15, shrink=0.85, min_eps_mean=1e-3, max_eps_mean=1.0)
    kw.update(min_eps_cov=1e-4, max_eps_cov=0.1)
    state = tr.update_trust_region(state, jnp.array([0.0, 0.0, jnp.nan]), active, **kw)
    assert np.isnan(state.last_objective[2])  # a NaN objective is not recorded ...
    state = tr.update_trust_region(state, jnp.array([1.0, jnp.nan, 5.0]), active, **kw)
    np.testing.assert_allclose(state.eps_mean, [0.575, 0.425, 0.5], rtol=1e-6)
    np.testing.assert_allclose(state.eps_cov, [0.0575, 0.0425, 0.05], rtol=1e-6)
    # ... and a failed update shrinks but keeps the last finite objective.
    np.testing.assert_array_equal(state.last_objective, [1.0, 0.0, 5.0])


def test_inactive_slots_are_left_unchanged():
    state = tr.init_trust_region(2, 0.1, 0.01)
    state = update(state, jnp.array([1.0, 1.0]), jnp.array([True, True]))
    after = update(state, jnp.array([5.0, 5.0]), jnp.array([True, False]))
    assert float(after.eps_mean[1]) == float(state.eps_mean[1])
    assert float(after.eps_cov[1]) == float(state.eps_cov[1])
    assert float(after.last_objective[1]) == 1.0
    assert float(after.eps_mean[0]) == pytest.approx(0.11)


def test_reset_slot_gives_fresh_bounds_and_no_history():
    state = tr.init_trust_region(3, 0.1, 0.01)
    active = jnp.ones(3, bool)
    state = update(state, jnp.zeros(3), active)
    state = update(state, -jnp.ones(3), active)  # all shrink
    reset = jax.jit(tr.reset_slot)(state, 1, 0.2, 0.02)  # traced slot index
    np.testing.assert_allclose(reset.eps_mean, [0.05, 0.2, 0.05], rtol=1e-6)
    np.testing.assert_allclose(reset.eps_cov, [0.005, 0.02, 0.005], rtol=1e-6)
    assert np.isnan(reset.last_objective[1])
    np.testing.assert_array_equal(np.asarray(reset.last_objective)[[0, 2]], [-1.0, -1.0])
    # The next update only records slot 1, and adapts the others.
    nxt = update(reset, jnp.array([5.0, 5.0, -5.0]), active)
    np.testing.assert_allclose(nxt.eps_mean, [0.055, 0.2, 0.025], rtol=1e-6)
    assert float(nxt.last_objective[1]) == 5.0
    masked = tr.reset_slots(state, jnp.array([True, False, True]), 0.3, 0.03)
    np.testing.assert_allclose(masked.eps_mean, [0.3, 0.05, 0.3], rtol=1e-6)
    with pytest.raises(ValueError, match="slot 3 out of range"):
        tr.reset_slot(state, 3, 0.1, 0.01)


def test_update_is_jittable_and_validates():
    state = tr.init_trust_region(2, 0.1, 0.01)
    obj, active = jnp.array([1.0, 2.0]), jnp.ones(2, bool)
    jitted = jax.jit(update)(state, obj, active)
    eager = update(state, obj, active)
    for a, b in zip(
        jax.tree_util.tree_leaves(jitted), jax.tree_util.tree_leaves(eager), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"must have shape \(2,\)"):
        update(state, jnp.ones(3), active)
    with pytest.raises(ValueError, match="grow must be >= 1"):
        update(state, obj, active, grow=0.9)
    with pytest.raises(ValueError, match="shrink must be in"):
        update(state, obj, active, shrink=1.5)
    with pytest.raises(ValueError, match="0 < min <= max for eps_cov"):
        update(state, obj, active, min_eps_cov=0.5, max_eps_cov=0.1)


def test_paired_baseline_decides_without_history():
    """With a baseline (the old model on the same batch) the first update already adapts, and
    'improved' means objective > baseline, whatever the previous step recorded."""
    state = tr.init_trust_region(4, 0.1, 0.01)
    active = jnp.array([True, True, True, False])
    obj = jnp.array([1.0, 1.0, 1.0, 9.0])
    base = jnp.array([0.5, 1.0, jnp.nan, 0.0])  # better, tie, no baseline, inactive
    new = update(state, obj, active, baseline=base, grow=1.5, shrink=0.5)
    np.testing.assert_allclose(new.eps_mean, [0.15, 0.05, 0.1, 0.1], rtol=1e-6)
    np.testing.assert_allclose(new.eps_cov, [0.015, 0.005, 0.01, 0.01], rtol=1e-6)
    # A recorded history is ignored when a baseline is given: 1.0 > 0.0 grows although 1.0 is not
    # above the recorded 1.0.
    again = update(new, obj, active, baseline=jnp.zeros(4), grow=1.5, shrink=0.5)
    np.testing.assert_allclose(again.eps_mean[:2], [0.2, 0.075], rtol=1e-6)
    with pytest.raises(ValueError, match=r"baseline \(3,\) must have shape \(4,\)"):
        update(state, obj, active, baseline=jnp.zeros(3))


def test_factors_and_limits_have_no_defaults_to_disagree_with_the_config():
    state = tr.init_trust_region(2, 0.1, 0.01)
    with pytest.raises(TypeError, match="grow"):
        tr.update_trust_region(state, jnp.ones(2), jnp.ones(2, bool), **LIMITS, shrink=0.5)
