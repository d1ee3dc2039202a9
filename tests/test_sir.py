"""Tests of sampling importance resampling against numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from avips_jax import sir

pytestmark = pytest.mark.usefixtures("fast_compiles")


def test_proposal_equal_to_target_gives_uniform_weights():
    log_p = jax.random.normal(jax.random.key(0), (64, 3)) * 30.0 - 500.0
    log_w = sir.log_importance_weights(log_p, log_p)
    np.testing.assert_allclose(log_w, np.full((64, 3), -np.log(64)), rtol=1e-6)
    np.testing.assert_allclose(sir.effective_sample_size(log_w), [64.0] * 3, rtol=1e-5)


def test_weights_match_numpy_reference():
    rng = np.random.default_rng(1)
    log_p = rng.normal(-800.0, 3.0, (50, 4))
    log_q = rng.normal(100.0, 3.0, (50, 4))
    w = np.exp(log_p - log_q - (log_p - log_q).max(0))
    w = w / w.sum(0)
    log_w = sir.log_importance_weights(jnp.asarray(log_p, jnp.float32), jnp.asarray(log_q))
    np.testing.assert_allclose(np.exp(log_w), w, rtol=2e-4, atol=1e-8)
    np.testing.assert_allclose(jax.nn.logsumexp(log_w, axis=0), 0.0, atol=1e-5)
    ess = sir.effective_sample_size(log_w)
    np.testing.assert_allclose(ess, 1.0 / (w**2).sum(0), rtol=1e-4)
    # ESS does not need normalised input.
    np.testing.assert_allclose(sir.effective_sample_size(log_w + 7.0), ess, rtol=1e-5)


WEIGHTS = np.array([[0.5, 0.2], [0.25, 0.2], [0.15, 0.2], [0.1, 0.2], [0.0, 0.2]])  # (N=5, B=2)


def test_multinomial_frequencies_match_weights():
    m = 20_000
    x = jnp.broadcast_to(jnp.arange(5.0)[:, None, None], (5, 2, 1))
    samples, idx = sir.resample(jax.random.key(2), x, jnp.log(WEIGHTS), m)
    assert samples.shape == (m, 2, 1) and idx.shape == (m, 2) and idx.dtype == jnp.int32
    np.testing.assert_array_equal(samples[..., 0], idx.astype(jnp.float32))
    for b in range(2):
        counts = np.bincount(np.asarray(idx[:, b]), minlength=5)
        nonzero = WEIGHTS[:, b] > 0
        assert np.all(counts[~nonzero] == 0)
        expected = m * WEIGHTS[nonzero, b]
        chi2 = np.sum((counts[nonzero] - expected) ** 2 / expected)
        assert chi2 < stats.chi2.ppf(0.9999, nonzero.sum() - 1), (counts, expected)


def test_systematic_counts_are_within_one_of_expected():
    m = 1000
    x = jax.random.normal(jax.random.key(3), (5, 2, 3))
    samples, idx = sir.resample(jax.random.key(4), x, jnp.log(WEIGHTS), m, method="systematic")
    for b in range(2):
        counts = np.bincount(np.asarray(idx[:, b]), minlength=5)
        assert np.all(np.abs(counts - m * WEIGHTS[:, b]) <= 1.0), counts
        np.testing.assert_array_equal(samples[:, b], x[idx[:, b], b])


def test_invalid_candidates_get_zero_weight():
    log_p = jnp.array(
        [[0.0, -jnp.inf, 1.0], [jnp.nan, -jnp.inf, 2.0], [1.0, jnp.nan, -jnp.inf], [2.0, 0.0, 3.0]]
    )
    log_q = jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [-jnp.inf, 0.0, 0.0]])
    log_w = sir.log_importance_weights(log_p, log_q)
    # Context 0: candidates 1 (NaN p) and 3 (-inf q, +inf raw weight) are invalid.
    w0 = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    np.testing.assert_allclose(np.exp(log_w[:, 0]), [w0[0], 0, w0[1], 0], rtol=1e-6)
    # Context 1: only candidate 3 is valid.
    np.testing.assert_allclose(np.exp(log_w[:, 1]), [0, 0, 0, 1], rtol=1e-6)
    assert not jnp.any(jnp.isnan(log_w))
    ess = sir.effective_sample_size(log_w)
    assert float(ess[1]) == pytest.approx(1.0)
    res = sir.sir(jax.random.key(5), jnp.zeros((4, 3, 2)), log_p, log_q, 500)
    assert np.all(np.isin(np.asarray(res.indices[:, 0]), [0, 2]))
    assert np.all(np.asarray(res.indices[:, 1]) == 3)
    assert not np.any(np.isin(np.asarray(res.indices[:, 2]), [2]))


def test_context_without_valid_candidate_is_all_zero_weight_and_uniform_resampled():
    log_p = jnp.concatenate([jnp.full((6, 1), -jnp.inf), jnp.zeros((6, 1))], axis=1)
    log_p = log_p.at[0, 0].set(jnp.nan)
    log_q = jnp.zeros((6, 2))
    x = jnp.broadcast_to(jnp.arange(6.0)[:, None, None], (6, 2, 1))
    res = sir.sir(jax.random.key(6), x, log_p, log_q, 3000)
    assert np.all(np.isneginf(np.asarray(res.log_w[:, 0])))
    assert float(res.ess[0]) == 0.0 and float(res.ess[1]) == pytest.approx(6.0)
    for leaf in jax.tree_util.tree_leaves(res):
        assert not jnp.any(jnp.isnan(leaf))
    counts = np.bincount(np.asarray(res.indices[:, 0]), minlength=6)
    assert np.all(counts > 300)  # uniform: 500 expected each
    assert np.all(np.isneginf(np.asarray(res.log_p[:, 0])))  # NaN reported as -inf


def test_sir_result_and_jit():
    key = jax.random.key(7)
    x = jax.random.normal(key, (32, 4, 2))
    log_q = jnp.sum(jax.scipy.stats.norm.logpdf(x), -1)
    log_p = jnp.sum(jax.scipy.stats.norm.logpdf(x, 0.5, 0.8), -1)
    eager = sir.sir(jax.random.key(8), x, log_p, log_q, 16)
    jitted = jax.jit(sir.sir, static_argnums=(4, 5))(jax.random.key(8), x, log_p, log_q, 16)
    for a, b in zip(
        jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(jitted), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert eager.samples.shape == (16, 4, 2) and eager.log_p.shape == (16, 4)
    assert eager.ess.shape == (4,) and eager.log_w.shape == (32, 4)
    np.testing.assert_array_equal(eager.log_p, jnp.take_along_axis(log_p, eager.indices, 0))
    np.testing.assert_array_equal(eager.samples, x[eager.indices, jnp.arange(4)[None]])
    assert jnp.all((eager.ess >= 1.0) & (eager.ess <= 32.0))


def test_gradients_stay_finite_with_invalid_entries():
    log_p = jnp.array([[0.0, -jnp.inf], [1.0, -jnp.inf], [-jnp.inf, -jnp.inf]])
    log_q = jnp.zeros((3, 2))

    def loss(lp):
        log_w = sir.log_importance_weights(lp, log_q)
        return jnp.sum(sir.effective_sample_size(log_w)) + jnp.sum(
            jnp.where(log_w > -1e30, log_w, 0)
        )

    grad = jax.grad(loss)(log_p)
    assert jnp.all(jnp.isfinite(grad))
    assert jnp.any(grad[:, 0] != 0)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"log_q shape \(3, 2\) differs"):
        sir.log_importance_weights(jnp.zeros((3, 1)), jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"log_p must have shape \(N, B\)"):
        sir.log_importance_weights(jnp.zeros(3), jnp.zeros(3))
    with pytest.raises(ValueError, match="must start with log_w shape"):
        sir.resample(jax.random.key(0), jnp.zeros((4, 2, 1)), jnp.zeros((3, 2)), 5)
    with pytest.raises(ValueError, match="m must be >= 1"):
        sir.resample(jax.random.key(0), jnp.zeros((3, 2, 1)), jnp.zeros((3, 2)), 0)
    with pytest.raises(ValueError, match="unknown resampling method 'stratified'"):
        sir.resample(jax.random.key(0), jnp.zeros((3, 2, 1)), jnp.zeros((3, 2)), 2, "stratified")
