"""Tests of avips_jax.projection's categorical KL trust-region projection (the gate's weights).

References are independent of the implementation: the closed-form mixture
w* ∝ w^{1/(1+eta)} w_o^{eta/(1+eta)} with eta found by `scipy.optimize.brentq`, and central
finite differences (`jax.test_util.check_grads`). Float64 unless a test says otherwise.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.special
from jax.test_util import check_grads

from avips_jax import projection

pytestmark = pytest.mark.usefixtures("fast_compiles")

_project_cat = jax.jit(projection.project_categorical)


def np_categorical_kl(logits, other):
    """KL(softmax(logits) || softmax(other)) over the last axis, in NumPy."""
    p = scipy.special.softmax(logits, axis=-1)
    return np.sum(
        p * (scipy.special.log_softmax(logits, -1) - scipy.special.log_softmax(other, -1)), -1
    )


def _cat_mix(eta, log_p, log_q):
    return scipy.special.log_softmax((log_p + eta * log_q) / (1 + eta))


def _cat_excess(eta, log_p, log_q, eps):
    return np_categorical_kl(_cat_mix(eta, log_p, log_q), log_q) - eps


def test_categorical_identity_and_bound(x64):
    rng = np.random.default_rng(9)
    logits, old = 2.0 * rng.normal(size=(16, 5)), rng.normal(size=(16, 5))
    kl0 = np_categorical_kl(logits, old)
    eps = np.where(np.arange(16) % 2 == 0, 1.5 * kl0, 0.3 * kl0)
    out = np.asarray(_project_cat(logits, old, eps))
    inactive = kl0 <= eps
    np.testing.assert_array_equal(out[inactive], logits[inactive])
    np.testing.assert_allclose(
        np_categorical_kl(out[~inactive], old[~inactive]), eps[~inactive], rtol=1e-8
    )
    # Independent reference: w* ∝ w^{1/(1+eta)} w_o^{eta/(1+eta)}, eta by brentq.
    for i in np.flatnonzero(~inactive):
        lp, lq = scipy.special.log_softmax(logits[i]), scipy.special.log_softmax(old[i])
        eta = scipy.optimize.brentq(_cat_excess, 0.0, 1e6, args=(lp, lq, eps[i]), rtol=1e-15)
        np.testing.assert_allclose(out[i], _cat_mix(eta, lp, lq), rtol=1e-7, atol=1e-9)
    _, vjp = jax.vjp(lambda x: _project_cat(x, old, eps), logits)
    cot = rng.normal(size=logits.shape)
    np.testing.assert_allclose(vjp(cot)[0][inactive], cot[inactive], rtol=1e-12)


def test_categorical_mask(x64):
    rng = np.random.default_rng(10)
    logits, old = 2.0 * rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    mask = np.array([True, True, False, True])
    logits[:, 2] = -np.inf
    out = np.asarray(_project_cat(logits, old, 0.01, mask=mask))
    assert np.all(out[:, 2] == -np.inf)
    act = mask
    np.testing.assert_allclose(np_categorical_kl(out[:, act], old[:, act]), 0.01, rtol=1e-8)
    # Values at masked entries are ignored; per-row masks broadcast the same way.
    changed = old.copy()
    changed[:, 2] = 50.0
    other = np.asarray(_project_cat(logits, changed, 0.01, mask=np.broadcast_to(mask, (3, 4))))
    np.testing.assert_allclose(other[:, act], out[:, act], rtol=1e-12)
    # A single active entry: KL is 0, the logits pass through.
    single = np.array([False, False, False, True])
    np.testing.assert_array_equal(_project_cat(logits, old, 0.0, mask=single), logits)


def test_categorical_check_grads(x64):
    rng = np.random.default_rng(11)
    logits, old = 2.0 * rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    kl0 = np_categorical_kl(logits, old)
    eps = kl0 * np.array([0.3, 2.0, 0.5, 0.1])
    mask = np.array([True, True, True, False, True])
    v = rng.normal(size=(4, 5))

    @jax.jit
    def loss(logits, eps):
        out = projection.project_categorical(logits, old, eps, mask=mask)
        return jnp.sum(v * jnp.where(mask, jnp.exp(out), 0.0))

    check_grads(loss, (logits, eps), order=1, modes=("fwd", "rev"), eps=1e-6)


def test_categorical_float32_dtype():
    """(project_gaussian keeps float32 too: asserted by the float32 stress test.)"""
    out = _project_cat(np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32), 0.1)
    assert out.dtype == jnp.float32
