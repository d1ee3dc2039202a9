"""Tests of the aVIPS loss: value, gradients against the thesis formula, weight step, rewards."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avips_jax import gmm, objectives, projection

pytestmark = pytest.mark.usefixtures("fast_compiles")  # compile time dominates

B, K, D, S = 3, 4, 2, 6
# The thesis loss: no projection regression, own rewards, no uniform share in the weights.
_THESIS = dict(
    alpha=0.0,
    project_weights=False,
    pooled_rewards=False,
    regression_direction="forward",
    uniform_component_share=0.0,
)


def _random_params(key, b=B, k=K, d=D, scale=2.0):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    diag = 0.5 + jax.random.uniform(k3, (b, k, d))
    off = 0.2 * jax.random.normal(k4, (b, k, d * (d - 1) // 2))
    return gmm.GMMParams(
        logits=jax.random.normal(k1, (b, k)),
        means=scale * jax.random.normal(k2, (b, k, d)),
        chols=gmm.make_cholesky(diag, off),
    )


def _target_log_prob(x):
    """A fixed 2-mode density in 2-D (unnormalised is fine)."""
    a = -0.5 * jnp.sum((x - 1.0) ** 2, -1)
    b = -0.5 * jnp.sum((x + 1.5) ** 2 / 0.5, -1)
    return jnp.logaddexp(a, b)


def _loss(params, active, key, pooled=False):
    x = gmm.sample_components(params, key, S)
    return objectives.vips_loss(
        params, params, active, x, _target_log_prob(x), **{**_THESIS, "pooled_rewards": pooled}
    )


def _thesis_loss(params, active, key):
    """docs/math.md §2.2 (the thesis loss), written out independently: one expression, weights
    not detached."""
    x = gmm.sample_components(params, key, S)
    sg = jax.lax.stop_gradient(params)
    log_w = gmm.log_weights(params, active)
    log_own = gmm.gaussian_log_prob(params.means, params.chols, x)
    resp = gmm.per_component_sample_log_responsibilities(sg, active, x)
    log_resp = jnp.diagonal(resp, axis1=-2, axis2=-1)
    inner = log_own - _target_log_prob(x) - log_resp + log_w
    inner = jnp.where(active, jnp.mean(inner, 0), 0.0)
    return jnp.mean(jnp.sum(jnp.where(active, jnp.exp(log_w), 0.0) * inner, -1))


@pytest.mark.parametrize("mask", [(1, 1, 1, 1), (1, 0, 1, 1)])
def test_loss_value_is_minus_elbo(mask):
    active = jnp.array(mask, bool)
    params = _random_params(jax.random.PRNGKey(0))
    loss, aux = _loss(params, active, jax.random.PRNGKey(1))
    np.testing.assert_allclose(loss, -jnp.mean(aux.elbo), rtol=1e-5)
    # The ELBO estimate equals the plain per-component Monte-Carlo average of log p - log q.
    x = gmm.sample_components(params, jax.random.PRNGKey(1), S)
    log_q = gmm.per_component_sample_log_prob(params, active, x)
    r = jnp.mean(_target_log_prob(x) - log_q, 0)
    w = jnp.exp(gmm.log_weights(params, active))
    elbo = jnp.sum(jnp.where(active, w * r, 0.0), -1)
    np.testing.assert_allclose(aux.elbo, elbo, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mask", [(1, 1, 1, 1), (1, 0, 1, 1)])
def test_gradients_match_the_thesis_single_expression(mask):
    active = jnp.array(mask, bool)
    params = _random_params(jax.random.PRNGKey(2))
    key = jax.random.PRNGKey(3)
    ours = jax.grad(lambda p: _loss(p, active, key)[0])(params)
    ref = jax.grad(lambda p: _thesis_loss(p, active, key))(params)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_weight_gradient_is_the_vips_natural_direction():
    """d loss / d logits = -w (r - sum_j w_j r_j) / B: the softmax of w exp(r) direction."""
    active = jnp.ones(K, bool)
    params = _random_params(jax.random.PRNGKey(4))
    key = jax.random.PRNGKey(5)
    _, aux = _loss(params, active, key)
    grad = jax.grad(lambda p: _loss(p, active, key)[0])(params).logits
    w = jnp.exp(aux.log_weights)
    centred = aux.rewards - jnp.sum(w * aux.rewards, -1, keepdims=True)
    np.testing.assert_allclose(grad, -w * centred / B, rtol=1e-4, atol=1e-6)


def test_pooled_and_own_rewards_agree_with_many_samples():
    active = jnp.ones(K, bool)
    params = _random_params(jax.random.PRNGKey(6), scale=1.0)
    x = gmm.sample_components(params, jax.random.PRNGKey(7), 4000)
    log_p = _target_log_prob(x)
    _, own = objectives.vips_loss(params, params, active, x, log_p, **_THESIS)
    _, pooled = objectives.vips_loss(
        params, params, active, x, log_p, **{**_THESIS, "pooled_rewards": True}
    )
    np.testing.assert_allclose(pooled.rewards, own.rewards, atol=0.1)
    assert np.all(pooled.ess > 100) and np.all(pooled.ess <= 4000 * K + 1e-3)


def test_regression_term_is_kl_from_projection_to_prediction():
    active = jnp.array([1, 1, 0, 1], bool)
    pred = _random_params(jax.random.PRNGKey(8))
    old = _random_params(jax.random.PRNGKey(9))
    eps = jnp.full((K,), 0.05)
    proj = objectives.project_mixture(pred, old, active, eps, eps * 0.1, None, "implicit")
    kl = projection.gaussian_kl(proj.means, proj.chols, pred.means, pred.chols)
    expected = jnp.mean(jnp.sum(jnp.where(active, kl, 0), -1) / 3)
    got = objectives.regression_loss(proj, pred, active, False, direction="forward")
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # The TRL direction KL(pred || proj) is a different number, and a typo is refused.
    kl_rev = projection.gaussian_kl(pred.means, pred.chols, proj.means, proj.chols)
    got_rev = objectives.regression_loss(proj, pred, active, False, direction="reverse")
    np.testing.assert_allclose(
        got_rev, jnp.mean(jnp.sum(jnp.where(active, kl_rev, 0), -1) / 3), rtol=1e-5
    )
    assert abs(float(got_rev) - float(got)) > 1e-3
    with pytest.raises(ValueError, match="regression direction"):
        objectives.regression_loss(proj, pred, active, False, direction="backward")
    # The projected components respect the bounds around the old ones.
    mean_part = projection.mean_kl_part(proj.means, old.means, old.chols)
    cov_part = projection.cov_kl_part(proj.chols, old.chols)
    assert np.all(mean_part <= 0.05 * (1 + 1e-3)) and np.all(cov_part <= 0.005 * (1 + 1e-2))


def test_own_sample_objective_matches_numpy():
    active = jnp.array([1, 0, 1, 1], bool)
    params = _random_params(jax.random.PRNGKey(21))
    x = gmm.sample_components(params, jax.random.PRNGKey(22), S)  # (S, B, K, D)
    log_p = _target_log_prob(x)
    got = np.asarray(objectives.own_sample_objective(params, active, x, log_p))
    # Independent: scipy-free NumPy mixture density at every sample.
    means, chols = np.asarray(params.means, np.float64), np.asarray(params.chols, np.float64)
    logits = np.where(np.asarray(active), np.asarray(params.logits, np.float64), -np.inf)
    log_w = (
        logits
        - np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1))[:, None]
        - logits.max(-1, keepdims=True)
    )
    xs = np.asarray(x, np.float64)
    expected = np.zeros(K)
    for k in np.flatnonzero(np.asarray(active)):
        vals = []
        for b in range(B):
            log_q = []
            for j in np.flatnonzero(np.asarray(active)):
                cov = chols[b, j] @ chols[b, j].T
                diff = xs[:, b, k] - means[b, j]
                maha = np.einsum("si,ij,sj->s", diff, np.linalg.inv(cov), diff)
                log_n = -0.5 * (maha + np.log(np.linalg.det(cov)) + D * np.log(2 * np.pi))
                log_q.append(log_w[b, j] + log_n)
            log_q = np.logaddexp.reduce(np.stack(log_q), axis=0)
            vals.append(log_w[b, k] + np.mean(np.asarray(log_p)[:, b, k] - log_q))
        expected[k] = np.mean(vals)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert got[1] == 0.0


def test_means_only_projection_keeps_the_network_covariances():
    active = jnp.ones(K, bool)
    pred = _random_params(jax.random.PRNGKey(31))
    old = _random_params(jax.random.PRNGKey(32))
    eps = jnp.full((K,), 0.05)
    proj = objectives.project_mixture(pred, old, active, eps, None, None, "implicit")
    np.testing.assert_array_equal(proj.chols, pred.chols)
    parts = projection.mean_kl_part(proj.means, old.means, old.chols)
    assert np.all(np.asarray(parts) <= 0.05 * (1 + 1e-4))
    full = objectives.project_mixture(pred, old, active, eps, eps, None, "implicit")
    np.testing.assert_allclose(proj.means, full.means, rtol=1e-5, atol=1e-6)


def test_vanilla_elbo_loss_is_the_plain_reparameterised_elbo():
    """Value = -mean_b sum_k w_k mean_s [log p - log q] (numbers from gmm.log_prob), and the
    gradient equals autodiff of that same expression written with gmm.log_prob directly."""
    active = jnp.array([1, 1, 0, 1], bool)
    params = _random_params(jax.random.PRNGKey(41))
    key = jax.random.PRNGKey(42)

    def direct(p):
        x = gmm.sample_components(p, key, S)  # (S, B, K, D)
        log_q = jnp.stack([gmm.log_prob(p, active, x[:, :, k]) for k in range(K)], -1)
        r = jnp.mean(_target_log_prob(x) - log_q, axis=0)  # (B, K)
        w = jnp.exp(gmm.log_weights(p, active))
        return -jnp.mean(jnp.sum(jnp.where(active, w * r, 0.0), -1))

    def ours(p):
        x = gmm.sample_components(p, key, S)
        return objectives.vanilla_elbo_loss(p, active, x, _target_log_prob(x))[0]

    np.testing.assert_allclose(ours(params), direct(params), rtol=1e-5)
    g_ours, g_direct = jax.grad(ours)(params), jax.grad(direct)(params)
    for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_direct), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert float(jnp.abs(g_ours.logits).sum()) > 0  # the weights get a gradient


def test_component_loss_weights_mix_the_weights_with_uniform():
    log_w = jnp.log(jnp.array([[0.7, 0.2, 0.1, 0.0], [0.25, 0.25, 0.5, 0.0]]))
    active = jnp.array([True, True, True, False])
    f = objectives.component_loss_weights(log_w, active, 0.4)
    # By hand: 0.6 w + 0.4 / 3 on the three active slots, 0 on the inactive one.
    expected = [[0.42 + 0.4 / 3, 0.12 + 0.4 / 3, 0.06 + 0.4 / 3, 0.0],
                [0.15 + 0.4 / 3, 0.15 + 0.4 / 3, 0.30 + 0.4 / 3, 0.0]]  # fmt: skip
    np.testing.assert_allclose(f, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="uniform_share"):
        objectives.component_loss_weights(log_w, active, 1.5)


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_uniform_component_share_rescales_only_the_component_gradients(share):
    """Component gradients are those of sum_k f_k E[log N_k - log p - log q_sg(k|x)] with fixed
    f = (1 - u) w + u / K_active; the gate gradient (the weight objective) does not depend on u."""
    active = jnp.array([True, False, True, True])
    params = _random_params(jax.random.PRNGKey(8))
    key = jax.random.PRNGKey(9)
    w = np.asarray(jnp.exp(gmm.log_weights(params, active)))
    f = np.where(np.asarray(active), (1.0 - share) * w + share / 3.0, 0.0)

    def reference(p):
        x = gmm.sample_components(p, key, S)
        resp = gmm.per_component_sample_log_responsibilities(jax.lax.stop_gradient(p), active, x)
        own = gmm.gaussian_log_prob(p.means, p.chols, x)
        inner = own - _target_log_prob(x) - jnp.diagonal(resp, axis1=-2, axis2=-1)
        return jnp.mean(jnp.sum(f * jnp.where(active, jnp.mean(inner, 0), 0.0), -1))

    def ours(p, u):
        x = gmm.sample_components(p, key, S)
        return objectives.vips_loss(
            p, p, active, x, _target_log_prob(x), **{**_THESIS, "uniform_component_share": u}
        )[0]

    got = jax.grad(ours)(params, share)
    ref = jax.grad(reference)(params)
    np.testing.assert_allclose(got.means, ref.means, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(got.chols, ref.chols, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(got.logits, jax.grad(ours)(params, 0.0).logits, atol=1e-6)
    if share > 0:  # the inactive slot gets nothing, the others are reweighted
        assert not np.allclose(got.means, jax.grad(ours)(params, 0.0).means, atol=1e-4)


def test_stopped_covariance_gradient_is_zero_where_the_bound_is_active_else_identity():
    """'stop' keeps the projected values and cuts the gradient into the predicted Cholesky
    factor exactly where the covariance bound is active; elsewhere the projection is the
    identity and so is its gradient."""
    active = jnp.ones(K, bool)
    old = _random_params(jax.random.PRNGKey(41))
    far = _random_params(jax.random.PRNGKey(42))
    # Slots 0 and 1 keep the old covariance (bound inactive), slots 2 and 3 a far one (active).
    chols = jnp.concatenate([old.chols[:, :2], 3.0 * far.chols[:, 2:]], axis=1)
    pred = old.replace(chols=chols)
    eps_mean, eps_cov = jnp.full((K,), 0.05), jnp.full((K,), 0.01)
    cov_parts = projection.cov_kl_part(pred.chols, old.chols)
    assert np.all(np.asarray(cov_parts[:, :2]) < 1e-6) and np.all(np.asarray(cov_parts[:, 2:]) > 1)

    @functools.partial(jax.jit, static_argnums=1)
    def projected(chols, mode):
        return objectives.project_mixture(
            pred.replace(chols=chols), old, active, eps_mean, eps_cov, None, mode
        ).chols

    np.testing.assert_array_equal(projected(chols, "stop"), projected(chols, "implicit"))
    weights = jax.random.normal(jax.random.PRNGKey(43), chols.shape)
    grad = lambda mode: jax.grad(lambda c: jnp.sum(weights * projected(c, mode)))(chols)
    stop, implicit = grad("stop"), grad("implicit")
    np.testing.assert_array_equal(stop[:, 2:], 0.0)
    np.testing.assert_allclose(stop[:, :2], jnp.tril(weights[:, :2]), rtol=1e-5, atol=1e-6)
    assert float(jnp.max(jnp.abs(implicit[:, 2:]))) > 1e-3  # the exact gradient is not zero
    with pytest.raises(ValueError, match="covariance_gradient"):
        objectives.project_mixture(pred, old, active, eps_mean, eps_cov, None, "x")
