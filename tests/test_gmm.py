"""Tests of avips_jax.gmm against distrax / scipy references and by statistical checks."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from avips_jax import gmm

B, K, D = 3, 4, 3
ACTIVE = np.array([True, False, True, True])


pytestmark = pytest.mark.usefixtures("fast_compiles")


def random_params(seed, b=B, k=K, d=D, dtype=np.float64):
    """Random GMMParams with well-conditioned lower-triangular factors (numpy arrays)."""
    rng = np.random.default_rng(seed)
    chols = np.tril(rng.normal(scale=0.4, size=(b, k, d, d)), -1)
    chols += np.eye(d) * rng.uniform(0.5, 1.5, size=(b, k, d))[..., None]
    return gmm.GMMParams(
        logits=rng.normal(size=(b, k)).astype(dtype),
        means=rng.normal(scale=2.0, size=(b, k, d)).astype(dtype),
        chols=chols.astype(dtype),
    )


def distrax_mixture(params, active):
    """Reference mixture over the active components only."""
    idx = np.flatnonzero(active)
    return distrax.MixtureSameFamily(
        mixture_distribution=distrax.Categorical(logits=params.logits[:, idx]),
        components_distribution=distrax.MultivariateNormalTri(
            loc=params.means[:, idx], scale_tri=params.chols[:, idx]
        ),
    )


def scipy_component_logpdf(params, x):
    """(N, B, d) -> (N, B, K) by looping over contexts and components."""
    n, b, _ = x.shape
    out = np.zeros((n, b, params.logits.shape[1]))
    for i in range(b):
        for k in range(params.logits.shape[1]):
            cov = params.chols[i, k] @ params.chols[i, k].T
            out[:, i, k] = stats.multivariate_normal(params.means[i, k], cov).logpdf(x[:, i])
    return out


def test_log_prob_matches_distrax_float64():
    with jax.enable_x64(True):
        params = random_params(0)
        x = np.random.default_rng(1).normal(scale=2.0, size=(5, B, D))
        ours = gmm.log_prob(jax.tree.map(jnp.asarray, params), ACTIVE, x)
        ref = distrax_mixture(params, ACTIVE).log_prob(jnp.asarray(x))
        np.testing.assert_allclose(ours, ref, rtol=1e-10)
        assert ours.dtype == jnp.float64


def test_component_log_probs_match_scipy_float64():
    with jax.enable_x64(True):
        params = random_params(2)
        x = np.random.default_rng(3).normal(scale=2.0, size=(2, 5, B, D))
        ours = gmm.component_log_probs(params, x)
        ref = scipy_component_logpdf(params, x.reshape(10, B, D)).reshape(2, 5, B, K)
        np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_gaussian_log_prob_broadcasts_and_matches_scipy():
    with jax.enable_x64(True):
        params = random_params(4)
        mean, chol = params.means[0, 1], params.chols[0, 1]
        x = np.random.default_rng(5).normal(size=(7, 2, D))
        ours = gmm.gaussian_log_prob(mean, chol, x)  # mean/chol broadcast against (7, 2)
        ref = stats.multivariate_normal(mean, chol @ chol.T).logpdf(x)
        np.testing.assert_allclose(ours, ref, rtol=1e-10)
        assert ours.shape == (7, 2)


def test_log_responsibilities_float64():
    with jax.enable_x64(True):
        params = random_params(6)
        x = np.random.default_rng(7).normal(scale=2.0, size=(4, B, D))
        ours = np.asarray(gmm.log_responsibilities(params, ACTIVE, x))
        comp = scipy_component_logpdf(params, x)
        logw = params.logits[:, ACTIVE] - special.logsumexp(params.logits[:, ACTIVE], -1)[:, None]
        joint = logw + comp[..., ACTIVE]
        ref = joint - special.logsumexp(joint, axis=-1)[..., None]
        np.testing.assert_allclose(ours[..., ACTIVE], ref, rtol=1e-10, atol=1e-12)
        assert np.all(np.isneginf(ours[..., ~ACTIVE]))
        np.testing.assert_allclose(np.exp(ours).sum(-1), 1.0, rtol=1e-12)


def test_log_weights_mask():
    params = random_params(8, dtype=np.float32)
    logw = np.asarray(gmm.log_weights(params, ACTIVE))
    assert np.all(np.isneginf(logw[:, ~ACTIVE]))
    np.testing.assert_allclose(np.exp(logw).sum(-1), 1.0, rtol=1e-6)
    ref = params.logits[:, ACTIVE] - special.logsumexp(params.logits[:, ACTIVE], -1)[:, None]
    np.testing.assert_allclose(logw[:, ACTIVE], ref, rtol=1e-5)


def test_inactive_slots_do_not_change_values():
    params = random_params(9, dtype=np.float32)
    wild = params.replace(
        logits=np.where(ACTIVE, params.logits, 50.0).astype(np.float32),
        means=np.where(ACTIVE[:, None], params.means, 1e3).astype(np.float32),
        chols=np.where(ACTIVE[:, None, None], params.chols, 1e-3 * np.eye(D)).astype(np.float32),
    )
    x = np.random.default_rng(10).normal(size=(6, B, D)).astype(np.float32)
    np.testing.assert_allclose(
        gmm.log_prob(wild, ACTIVE, x), gmm.log_prob(params, ACTIVE, x), rtol=1e-6
    )


def test_masked_gradients_are_finite_and_zero_for_inactive():
    params = jax.tree.map(jnp.asarray, random_params(11, dtype=np.float32))
    x = jnp.asarray(np.random.default_rng(12).normal(size=(5, B, D)), jnp.float32)

    def loss(p):
        logw = gmm.log_weights(p, ACTIVE)
        log_resp = gmm.log_responsibilities(p, ACTIVE, x)
        weight_entropy = -jnp.sum(jnp.where(ACTIVE, jnp.exp(logw) * logw, 0.0))
        masked_resp = jnp.sum(jnp.where(ACTIVE, log_resp, 0.0))
        return jnp.sum(gmm.log_prob(p, ACTIVE, x)) + weight_entropy + masked_resp

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    assert np.isfinite(value)
    for leaf in jax.tree.leaves(grads):
        assert np.all(np.isfinite(leaf))
    assert np.all(np.asarray(grads.logits)[:, ~ACTIVE] == 0.0)
    assert np.all(np.asarray(grads.means)[:, ~ACTIVE] == 0.0)
    assert np.all(np.asarray(grads.chols)[:, ~ACTIVE] == 0.0)
    assert np.any(np.asarray(grads.means)[:, ACTIVE] != 0.0)


def test_all_masked_gives_minus_inf_not_nan():
    params = random_params(13, dtype=np.float32)
    none = np.zeros(K, bool)
    assert np.all(np.isneginf(gmm.log_weights(params, none)))
    x = np.zeros((2, B, D), np.float32)
    assert np.all(np.isneginf(gmm.log_prob(params, none, x)))


def test_per_component_sample_log_probs_match_loop():
    params = random_params(14, dtype=np.float32)
    x = np.random.default_rng(15).normal(size=(2, B, K, D)).astype(np.float32)
    ours = np.asarray(gmm.per_component_sample_log_probs(params, x))
    assert ours.shape == (2, B, K, K)
    for j in range(K):
        np.testing.assert_allclose(
            ours[:, :, j], gmm.component_log_probs(params, x[:, :, j]), rtol=1e-6
        )
    resp = np.asarray(gmm.per_component_sample_log_responsibilities(params, ACTIVE, x))
    mix = np.asarray(gmm.per_component_sample_log_prob(params, ACTIVE, x))
    for j in range(K):
        np.testing.assert_allclose(
            resp[:, :, j], gmm.log_responsibilities(params, ACTIVE, x[:, :, j]), rtol=1e-6
        )
        np.testing.assert_allclose(
            mix[:, :, j], gmm.log_prob(params, ACTIVE, x[:, :, j]), rtol=1e-6
        )


def test_own_sample_log_prob_is_the_density_at_the_sample_with_the_same_gradient():
    params = random_params(16, dtype=np.float32)
    key = jax.random.PRNGKey(3)
    x, eps = gmm.sample_components_and_noise(params, key, 5)
    np.testing.assert_array_equal(x, gmm.sample_components(params, key, 5))
    own = gmm.own_sample_log_prob(params.chols, eps)
    solved = gmm.gaussian_log_prob(params.means, params.chols, x)
    np.testing.assert_allclose(own, solved, rtol=1e-5, atol=1e-5)
    with_own = gmm.per_component_sample_log_prob(params, ACTIVE, x, own)
    np.testing.assert_allclose(with_own, gmm.per_component_sample_log_prob(params, ACTIVE, x), 1e-5)

    def total(fn):  # d/d(means, chols) of the sum, through the sample path too
        def f(means, chols):
            p = gmm.GMMParams(params.logits, means, chols)
            x, eps = gmm.sample_components_and_noise(p, key, 5)
            return jnp.sum(fn(p, x, eps))

        return jax.grad(f, argnums=(0, 1))(params.means, params.chols)

    exact = total(lambda p, x, eps: gmm.own_sample_log_prob(p.chols, eps))
    by_solve = total(lambda p, x, eps: gmm.gaussian_log_prob(p.means, p.chols, x))
    np.testing.assert_allclose(exact[0], by_solve[0], rtol=1e-4, atol=1e-4)
    # Only the lower triangle is a parameter (the network's factors are lower-triangular; the
    # solve ignores the upper one, the sampling path does not).
    np.testing.assert_allclose(np.tril(exact[1]), np.tril(by_solve[1]), rtol=1e-4, atol=1e-4)


def test_exact_own_density_survives_an_ill_conditioned_cholesky():
    """Diagonal at 1e-3 and off-diagonal entries of 12 (what the vanilla GMM learnt on Panda,
    seed 1): cond(L) ~ 1e20, the float32 solve at the component's own samples is off by orders of
    magnitude, the exact term is not."""
    d = 7
    chol = np.tril(np.full((d, d), 12.0), -1) + np.eye(d) * 1e-3
    params = gmm.GMMParams(
        logits=np.zeros((1, 1), np.float32),
        means=np.zeros((1, 1, d), np.float32),
        chols=chol[None, None].astype(np.float32),
    )
    x, eps = gmm.sample_components_and_noise(params, jax.random.PRNGKey(0), 64)
    own = gmm.own_sample_log_prob(params.chols, eps)
    truth = stats.norm.logpdf(np.asarray(eps, np.float64)).sum(-1) - np.log(1e-3) * d
    np.testing.assert_allclose(own, truth, rtol=1e-5)
    active = np.array([True])
    solved = np.asarray(gmm.per_component_sample_log_prob(params, active, x))
    assert np.max(np.abs(solved - truth)) > 1e6  # the failure the exact term removes
    fixed = np.asarray(gmm.per_component_sample_log_prob(params, active, x, own))
    np.testing.assert_allclose(fixed, truth, rtol=1e-5)


def test_sample_components_moments():
    params = random_params(16, b=2, k=2, d=2, dtype=np.float32)
    n = 20000
    x = np.asarray(gmm.sample_components(params, jax.random.key(0), n), np.float64)
    assert x.shape == (n, 2, 2, 2)
    cov = np.einsum("bkij,bklj->bkil", params.chols, params.chols)
    se = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1) / n)
    assert np.all(np.abs(x.mean(0) - params.means) < 5 * se)
    centred = x - x.mean(0)
    emp_cov = np.einsum("nbki,nbkj->bkij", centred, centred) / (n - 1)
    scale = np.sqrt(np.einsum("bkii,bkjj->bkij", cov, cov))
    assert np.all(np.abs(emp_cov - cov) < 0.05 * scale)


@pytest.mark.parametrize("k,d", [(4, 2), (2, 4)])  # gather path (d <= K) and one-hot path
def test_sample_mixture_moments_and_ids(k, d):
    active = np.arange(k) != 1
    params = random_params(17, b=2, k=k, d=d, dtype=np.float32)
    n = 20000
    x, ids = gmm.sample(params, active, jax.random.key(1), n)
    x, ids = np.asarray(x, np.float64), np.asarray(ids)
    assert x.shape == (n, 2, d) and ids.shape == (n, 2)
    assert not np.any(ids == 1)
    weights = np.exp(np.asarray(gmm.log_weights(params, active), np.float64))
    for b in range(2):
        freq = np.bincount(ids[:, b], minlength=k) / n
        tol = 5 * np.sqrt(weights[b] * (1 - weights[b]) / n) + 1e-12
        assert np.all(np.abs(freq - weights[b]) <= tol)
        for j in np.flatnonzero(active):  # conditional moments per component
            xs = x[ids[:, b] == j, b]
            if len(xs) < 500:
                continue
            cov = params.chols[b, j] @ params.chols[b, j].T
            se = np.sqrt(np.diag(cov) / len(xs))
            assert np.all(np.abs(xs.mean(0) - params.means[b, j]) < 5 * se)
            np.testing.assert_allclose(np.cov(xs.T), cov, atol=0.1 * np.max(np.diag(cov)))


def test_gaussian_entropy_matches_scipy():
    params = random_params(18)
    ours = np.asarray(gmm.gaussian_entropy(params.chols))
    for b in range(B):
        for k in range(K):
            cov = params.chols[b, k] @ params.chols[b, k].T
            ref = stats.multivariate_normal(np.zeros(D), cov).entropy()
            np.testing.assert_allclose(ours[b, k], ref, rtol=1e-5)


def test_entropy_estimate_single_component():
    params = random_params(19, k=1, dtype=np.float32)
    n = 20000
    est = np.asarray(gmm.entropy_estimate(params, np.array([True]), jax.random.key(2), n))
    exact = np.asarray(gmm.gaussian_entropy(params.chols))[:, 0]
    # -log q(x) = const + chi2_d / 2: its std is sqrt(d / 2), so the MC error is sqrt(d/2/n).
    assert est.shape == (B,)
    assert np.all(np.abs(est - exact) < 5 * np.sqrt(D / 2 / n))


def test_entropy_estimate_separated_mixture():
    # Far-apart components: H(q) = H(w) + sum_k w_k H_k up to exponentially small overlap.
    params = random_params(20, dtype=np.float32)
    params = params.replace(
        means=(100.0 * np.arange(K)[None, :, None] + params.means).astype(np.float32)
    )
    n = 20000
    est = np.asarray(gmm.entropy_estimate(params, ACTIVE, jax.random.key(3), n))
    logw = np.asarray(gmm.log_weights(params, ACTIVE), np.float64)[:, ACTIVE]
    w = np.exp(logw)
    h_k = np.asarray(gmm.gaussian_entropy(params.chols), np.float64)[:, ACTIVE]
    exact = -np.sum(w * logw, -1) + np.sum(w * h_k, -1)
    # -log q(x) = -log w_k + H_k + (chi2_d - d) / 2 for x from component k: its variance is
    # at most E[(log w + H)^2] + d / 2.
    var = np.sum(w * (logw - h_k) ** 2, -1) + D / 2
    assert np.all(np.abs(est - exact) < 5 * np.sqrt(var / n))


def test_fill_lower_triangular_order_and_roundtrip():
    d = 4
    vec = np.arange(1.0, 11.0)
    mat = np.asarray(gmm.fill_lower_triangular(vec, d))
    expected = np.zeros((d, d))
    count = 1.0
    for i in range(d):
        for j in range(i + 1):
            expected[i, j] = count
            count += 1.0
    np.testing.assert_array_equal(mat, expected)
    np.testing.assert_array_equal(gmm.lower_triangular_to_vector(mat), vec)
    strict = np.asarray(gmm.fill_lower_triangular(np.arange(1.0, 7.0), d, strict=True))
    expected_strict = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [2, 3, 0, 0], [4, 5, 6, 0.0]])
    np.testing.assert_array_equal(strict, expected_strict)
    np.testing.assert_array_equal(
        gmm.lower_triangular_to_vector(strict, strict=True), np.arange(1.0, 7.0)
    )


def test_make_cholesky():
    diag = np.array([[1.0, 2.0, 3.0]])
    off = np.array([[4.0, 5.0, 6.0]])
    expected = np.array([[[1.0, 0, 0], [4.0, 2.0, 0], [5.0, 6.0, 3.0]]])
    np.testing.assert_array_equal(gmm.make_cholesky(diag, off), expected)


def test_diag_transform():
    raw = np.linspace(-10.0, 30.0, 101, dtype=np.float32)
    diag = np.asarray(gmm.diag_from_raw(raw, 0.7, 1e-3))
    assert np.all(diag >= 1e-3) and np.all(np.diff(diag) > 0)
    assert np.all(gmm.diag_from_raw(np.float32(-100.0), 0.7, 1e-3) >= 1e-3)
    np.testing.assert_allclose(gmm.diag_from_raw(0.0, 0.7, 1e-3), 0.7, rtol=1e-6)
    np.testing.assert_allclose(gmm.raw_from_diag(diag[:60], 0.7, 1e-3), raw[:60], atol=1e-3)
    np.testing.assert_allclose(
        gmm.softplus_inverse(jax.nn.softplus(np.array([-3.0, 0.1, 5.0]))),
        [-3.0, 0.1, 5.0],
        rtol=1e-5,
    )


def test_jit_matches_eager():
    params = random_params(21, dtype=np.float32)
    x = np.random.default_rng(22).normal(size=(5, B, D)).astype(np.float32)
    np.testing.assert_allclose(
        jax.jit(gmm.log_prob)(params, ACTIVE, x), gmm.log_prob(params, ACTIVE, x), rtol=1e-5
    )


def test_shape_errors():
    params = random_params(23, dtype=np.float32)
    with pytest.raises(ValueError, match="Inconsistent GMMParams"):
        gmm.check_params(params.replace(means=params.means[:, :2]))
    with pytest.raises(ValueError, match="logits"):
        gmm.check_params(params.replace(logits=params.logits[0]))
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., B=3, d=3\)"):
        gmm.log_prob(params, ACTIVE, np.zeros((5, 2, D)))
    with pytest.raises(ValueError, match="active must have shape"):
        gmm.log_prob(params, ACTIVE[:3], np.zeros((5, B, D)))
    with pytest.raises(ValueError, match="Per-component samples"):
        gmm.per_component_sample_log_probs(params, np.zeros((2, B, K - 1, D)))
    with pytest.raises(ValueError, match="gaussian_log_prob"):
        gmm.gaussian_log_prob(np.zeros(3), np.eye(2), np.zeros(3))
    with pytest.raises(ValueError, match="last axis"):
        gmm.fill_lower_triangular(np.zeros(5), 3)
