"""Tests of the toy conditional targets against independent numpy/scipy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from avips_jax import targets

CHUNK = 100_000
N_SAMPLES = 20_000

# (registry name, settings, grid spacing) of every 2-D target; the spacing is <= half the
# smallest length scale, where lattice sums of smooth densities are accurate to ~1e-6.
TARGETS_2D = [
    ("moving_gmm", {}, 0.15),
    ("spiral_gmm", {}, 0.1),
    ("spiral_gmm", {"context_dim": 1}, 0.15),
    ("banana", {}, 0.1),
    ("banana", {"num_components": 1}, 0.1),
]
IDS_2D = ["moving_gmm", "spiral_gmm", "spiral_gmm_dc1", "banana", "banana_k1"]


pytestmark = pytest.mark.usefixtures("fast_compiles")


def _sample(target):
    """Jitted exact sampler (eager dispatch of many small ops is slow on CPU)."""
    return jax.jit(target.sample, static_argnums=2)


def _test_contexts(target):
    """Both ends of the context range and an interior point, (3, d_c)."""
    b = target.context_bound
    return jnp.array(
        [[-b] * target.context_dim, [0.3] * target.context_dim, [b] * target.context_dim]
    )


def _grid_density(target, c, h):
    """Grid points (G, 2) over the target's box and log p on them, (G, B) float64."""
    g = np.arange(target.lower[0], target.upper[0] + h / 2, h)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    pts = np.stack([xx.ravel(), yy.ravel()], axis=-1).astype(np.float32)
    fn = jax.jit(lambda p: target.log_prob(p[:, None, :], c))
    out = []
    for i in range(0, len(pts), CHUNK):
        block = pts[i : i + CHUNK]
        padded = np.pad(block, ((0, CHUNK - len(block)), (0, 0)))
        out.append(np.asarray(fn(padded))[: len(block)])
    return pts.astype(np.float64), np.concatenate(out).astype(np.float64)


def _test_functions(x):
    """Smooth statistics whose expectations are compared: (..., 2) -> (..., 7).

    Smooth, so that the lattice sums of the reference stay accurate (an indicator's jump along
    grid lines would bias them by O(h)).
    """
    x0, x1 = x[..., 0], x[..., 1]
    return np.stack([x0, x1, x0**2, x1**2, x0 * x1, np.tanh(x0), np.tanh(x1 - x0)], axis=-1)


@pytest.fixture(scope="module", params=TARGETS_2D, ids=IDS_2D)
def grid_case(request):
    name, kwargs, h = request.param
    target = targets.make_target(name, **kwargs)
    c = _test_contexts(target)
    pts, log_dens = _grid_density(target, c, h)
    return target, c, h, pts, log_dens


def test_2d_targets_are_normalised(grid_case):
    target, c, h, _, log_dens = grid_case
    integral = np.exp(log_dens).sum(axis=0) * h * h
    np.testing.assert_allclose(integral, 1.0, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(target.log_normalizer(c)), np.zeros(3))


def test_2d_exact_samples_follow_the_density(grid_case):
    """Sample averages of smooth statistics and of log p (the negative entropy, which is
    sensitive to the shape of every component) match their lattice-sum expectations."""
    target, c, h, pts, log_dens = grid_case
    samples = _sample(target)(jax.random.key(0), c, N_SAMPLES)
    log_p_samples = np.asarray(jax.jit(target.log_prob)(samples, c), np.float64)
    samples = np.asarray(samples, np.float64)
    assert samples.shape == (N_SAMPLES, 3, 2)
    dens = np.exp(log_dens)
    f_grid = _test_functions(pts)  # (G, 7)
    expect = np.einsum("gb,gf->bf", dens, f_grid) * h * h  # (B, 7)
    neg_entropy = np.sum(dens * log_dens, axis=0) * h * h  # (B,)
    expect = np.concatenate([expect, neg_entropy[:, None]], axis=-1)
    f_samp = np.concatenate([_test_functions(samples), log_p_samples[..., None]], axis=-1)
    mean, se = f_samp.mean(0), f_samp.std(0) / math.sqrt(N_SAMPLES)
    assert np.all(np.abs(mean - expect) < 5 * se + 1e-9), (mean, expect, se)


def test_2d_box_covers_the_samples(grid_case):
    target, c, _, _, _ = grid_case
    samples = np.asarray(_sample(target)(jax.random.key(0), c, N_SAMPLES))
    inside = np.all((samples >= target.lower) & (samples <= target.upper), axis=-1)
    assert inside.mean() > 0.999


# --- independent references ---------------------------------------------------------------


def _mixture_logpdf(x, log_w, means, covs):
    comps = [stats.multivariate_normal(m, s).logpdf(x) for m, s in zip(means, covs, strict=True)]
    return float(np.logaddexp.reduce(np.asarray(log_w) + np.asarray(comps)))


def _log_softmax(z):
    z = np.asarray(z, np.float64)
    return z - np.logaddexp.reduce(z)


def _spiral_reference(x, c, k=10):
    c0 = c[0]
    c1 = c[1] if len(c) == 2 else c[0]
    means, covs, logits = [], [], []
    for i in range(k):
        t = 14 * np.pi * i / k
        b = t + 0.1 * c0
        means.append(0.3 * t * np.array([np.cos(b), np.sin(b)]))
        if len(c) == 2:
            chol = np.array(
                [
                    [0.3 * np.sin((i + 1) * c0) + 0.5, 0.0],
                    [0.3 * np.sin(c0) * np.cos(c1), 0.3 * np.cos((i + 1) * c1) + 0.5],
                ]
            )
        else:
            chol = np.array(
                [
                    [0.5 * np.sin((i + 1) * c0) + 0.8, 0.0],
                    [np.sin(3 * c0) * np.cos(3 * c0), 0.5 * np.cos((i + 1) * c0) + 0.8],
                ]
            )
        covs.append(chol @ chol.T)
        logits.append(np.sin((i + 1) * c0) if i % 2 == 0 else np.cos((i + 1) * c1))
    return _mixture_logpdf(x, _log_softmax(logits), means, covs)


@pytest.mark.parametrize(
    "x, c",
    [((1.3, -0.7), (0.4, -1.1)), ((-4.0, 2.5), (2.2, 0.9)), ((0.2, 0.1), (-0.6,))],
    ids=["dc2_a", "dc2_b", "dc1"],
)
def test_spiral_matches_hand_computed_value(x, c):
    target = targets.make_target("spiral_gmm", context_dim=len(c))
    with jax.enable_x64(True):
        got = float(
            jax.jit(target.log_prob)(jnp.asarray(x, jnp.float64), jnp.asarray(c, jnp.float64))
        )
    assert got == pytest.approx(_spiral_reference(np.array(x), np.array(c)), abs=1e-9)


def _moving_reference_params(c, m=4, radius=3.0, rotation=0.5):
    i = np.arange(m)
    angle = 2 * np.pi * i / m + rotation * c
    means = radius * (1 + 0.25 * c) * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    chols = np.zeros((m, 2, 2))
    chols[:, 0, 0] = 0.4 + 0.1 * np.sin(2 * c + i)
    chols[:, 1, 0] = 0.15 * np.sin(c + i)
    chols[:, 1, 1] = 0.4 + 0.1 * np.cos(2 * c + i)
    log_w = _log_softmax(0.5 * np.sin(np.pi * c + np.pi * i / 2))
    return log_w, means, chols @ np.swapaxes(chols, -1, -2)


def test_moving_gmm_matches_its_documented_formula():
    target = targets.make_target("moving_gmm")
    c, x = -0.35, np.array([2.1, 1.4])
    log_w, means, covs = _moving_reference_params(c)
    with jax.enable_x64(True):
        cj = jnp.asarray([[c]], jnp.float64)
        got = float(jax.jit(target.log_prob)(jnp.asarray(x, jnp.float64), cj[0]))
        np.testing.assert_allclose(target.modes(cj)[0], means, atol=1e-12)
        np.testing.assert_allclose(target.mode_weights(cj)[0], np.exp(log_w), atol=1e-12)
        min_std = np.sqrt(np.linalg.eigvalsh(covs)[:, 0])
        np.testing.assert_allclose(target.mode_stds(cj)[0], min_std, atol=1e-9)
    assert got == pytest.approx(_mixture_logpdf(x, log_w, means, covs), abs=1e-9)


def test_moving_gmm_modes_move_and_are_maxima():
    target = targets.make_target("moving_gmm")
    c = jnp.array([[-1.0], [0.0], [1.0]])
    modes, stds, covs = jax.jit(lambda c: (target.modes(c), target.mode_stds(c), _covs(target, c)))(
        c
    )
    assert modes.shape == (3, 4, 2) and stds.shape == (3, 4)
    shift = jnp.linalg.norm(modes[2] - modes[0], axis=-1)
    assert jnp.all(shift > 1.0), shift
    # Every mode is a local maximum of the mixture density.
    angles = jnp.linspace(0, 2 * jnp.pi, 8, endpoint=False)
    dirs = 0.1 * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)  # (8, 2)
    points = jnp.concatenate([modes[None], modes[None] + dirs[:, None, None, :]])  # (9, 3, 4, 2)
    lp = jax.jit(target.log_prob)(points, c[None, :, None, :])
    assert jnp.all(lp[1:] < lp[:1])
    # Neighbouring modes are far apart in units of their stds (well separated).
    gap = jnp.linalg.norm(modes - jnp.roll(modes, 1, axis=1), axis=-1)
    assert jnp.all(gap > 5 * jnp.max(jnp.sqrt(jnp.linalg.eigvalsh(covs)), -1))


def _covs(target, c):
    chols = target.component_params(c)[2]
    return chols @ jnp.swapaxes(chols, -1, -2)


def test_moving_gmm_sample_clusters_match_the_components():
    """Samples nearest to each mode have the documented weight, mean and covariance."""
    target = targets.make_target("moving_gmm")
    c_values = (-0.8, 0.5)
    samples = np.asarray(
        _sample(target)(jax.random.key(3), jnp.array(c_values)[:, None], N_SAMPLES), np.float64
    )
    for b, c in enumerate(c_values):
        log_w, means, covs = _moving_reference_params(c)
        x = samples[:, b]
        label = np.argmin(np.linalg.norm(x[:, None] - means[None], axis=-1), axis=-1)
        for k in range(4):
            w = np.exp(log_w[k])
            freq = np.mean(label == k)
            assert abs(freq - w) < 5 * math.sqrt(w * (1 - w) / N_SAMPLES), (freq, w)
            xk = x[label == k]
            n = len(xk)
            assert np.all(np.abs(xk.mean(0) - means[k]) < 5 * xk.std(0) / math.sqrt(n))
            centred = xk - means[k]
            prods = centred[:, :, None] * centred[:, None, :]  # (n, 2, 2)
            se = prods.std(0) / math.sqrt(n)
            assert np.all(np.abs(prods.mean(0) - covs[k]) < 5 * se), (prods.mean(0), covs[k])


def _banana_reference(x, c0, kappas):
    r = np.array([[-0.9751, -0.2217], [0.2217, -0.9751]])
    r = r / np.sqrt(np.linalg.det(r))  # the thesis matrix, made exactly orthogonal
    k = len(kappas)
    logits = [np.sin((i + 1) * c0) if i % 2 == 0 else np.cos((i + 1) * c0) for i in range(k)]
    comps = []
    for kap in kappas:
        t = 4 * np.sin(3 * kap + 3) * np.ones(2)
        y = r @ (x - t)
        z = np.array([y[0], y[1] - kap * y[0] ** 2 + kap])
        comps.append(stats.multivariate_normal(np.zeros(2), 0.4 * np.eye(2)).logpdf(z))
    return float(np.logaddexp.reduce(_log_softmax(logits) + np.array(comps)))


@pytest.mark.parametrize("k", [1, 2, 5])
def test_banana_matches_hand_computed_value(k):
    c0, x = 0.7, np.array([1.5, -2.0])
    kappas = {
        1: [c0],
        2: [c0, 0.5 * c0 + 1],
        5: [0.2 * c0 + 1.5, -0.2 * c0 - 1.5, c0, 0.5 * c0 + 1, -0.5 * c0 - 1],
    }[k]
    target = targets.make_target("banana", num_components=k)
    with jax.enable_x64(True):
        got = float(
            jax.jit(target.log_prob)(jnp.asarray(x, jnp.float64), jnp.asarray([c0], jnp.float64))
        )
    assert got == pytest.approx(_banana_reference(x, c0, kappas), abs=1e-9)


# --- funnel --------------------------------------------------------------------------------


def _funnel_sigma(c):
    return (
        np.sin(3 * c[..., 0] * c[..., 1] + 1) + 1.1
        if c.shape[-1] == 2
        else np.sin(3 * c[..., 0] + 1) + 1.1
    )


@pytest.mark.parametrize("context_dim", [1, 2])
def test_funnel_log_prob_matches_scipy_and_samples_are_exact(context_dim):
    target = targets.make_target("funnel", context_dim=context_dim)
    c = target.sample_contexts(jax.random.key(4), 3)
    with jax.enable_x64(True):
        c64 = jnp.asarray(c, jnp.float64)
        x = np.asarray(jax.jit(target.sample, static_argnums=2)(jax.random.key(5), c64, 4000))
        got = np.asarray(jax.jit(target.log_prob)(jnp.asarray(x), c64))  # x: (n, B, 10)
    sigma = _funnel_sigma(np.asarray(c, np.float64))
    v = x[..., 0]
    ref = stats.norm.logpdf(v, 0, sigma) + stats.norm.logpdf(
        x[..., 1:], 0, np.exp(v / 2)[..., None]
    ).sum(-1)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-9)
    for b in range(3):
        assert stats.kstest(v[:, b] / sigma[b], "norm").pvalue > 1e-3
        whitened = (x[:, b, 1:] * np.exp(-v[:, b] / 2)[:, None]).ravel()
        assert stats.kstest(whitened, "norm").pvalue > 1e-3


def test_funnel_is_finite_for_extreme_x0():
    target = targets.make_target("funnel")
    c = jnp.array([0.3, -0.2])
    x = jnp.zeros((4, 10)).at[:, 0].set(jnp.array([-1e4, -1e4, -60.0, 80.0]))
    x = x.at[1, 1:].set(5.0).at[2, 1:].set(-3.0)
    lp, grads = jax.jit(jax.vmap(jax.value_and_grad(target.log_prob), in_axes=(0, None)))(x, c)
    assert jnp.all(jnp.isfinite(lp)) and jnp.all(jnp.isfinite(grads))
    # Below the floor the conditional variance is exp(floor); the x_0 term is unchanged.
    sigma = float(target.sigma(c))
    ref = stats.norm.logpdf(-60.0, 0, sigma) + 9 * stats.norm.logpdf(-3.0, 0, math.exp(-10.0))
    assert float(lp[2]) == pytest.approx(ref, rel=1e-5)


def test_funnel_box_and_normaliser():
    target = targets.make_target("funnel", dim=6, context_dim=1)
    assert target.lower.shape == (6,) and np.all(target.lower == -target.upper)
    assert target.upper[0] == pytest.approx(10.5)
    assert target.log_normalizer(jnp.zeros((2, 5, 1))).shape == (2, 5)
    samples = np.asarray(_sample(target)(jax.random.key(6), jnp.array([[2.8], [-1.0]]), 3000))
    assert np.mean(np.all(np.abs(samples) <= target.upper, axis=-1)) > 0.99


# --- interface -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["moving_gmm", "spiral_gmm", "banana", "funnel"])
def test_shapes_and_broadcasting(name):
    target = targets.make_target(name)
    d, dc = target.dim, target.context_dim
    c = target.sample_contexts(jax.random.key(7), 3)
    assert c.shape == (3, dc) and c.dtype == jnp.float32
    assert jnp.all(jnp.abs(c) <= target.context_bound)
    x = _sample(target)(jax.random.key(8), c, 5)
    assert x.shape == (5, 3, d)
    log_prob = jax.jit(target.log_prob)
    lp = log_prob(x, c)
    assert lp.shape == (5, 3) and lp.dtype == jnp.float32
    single = np.array([[log_prob(x[i, b], c[b]) for b in range(3)] for i in range(5)])
    assert single.shape == (5, 3)
    np.testing.assert_allclose(lp, single, rtol=1e-6)
    np.testing.assert_allclose(log_prob(x[:, :1], c)[:, 0], single[:, 0], rtol=1e-6)
    np.testing.assert_allclose(log_prob(x[:, :1], c)[:, 2], log_prob(x[:, 0], c[2]), rtol=1e-6)
    assert log_prob(x[0, 0], c).shape == (3,)
    # The per-point definition agrees with the (possibly overridden) batched path.
    np.testing.assert_allclose(jax.vmap(target._log_prob_single)(x[0], c), lp[0], rtol=1e-5)
    assert target.lower.shape == (d,) and np.all(target.lower < target.upper)


def test_bad_shapes_raise_clear_errors():
    target = targets.make_target("spiral_gmm")
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 2\)"):
        target.log_prob(jnp.zeros((4, 3)), jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"c must have shape \(\.\.\., 2\)"):
        target.log_prob(jnp.zeros((4, 2)), jnp.zeros((4, 1)))
    with pytest.raises(ValueError, match="do not broadcast"):
        target.log_prob(jnp.zeros((4, 2)), jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"contexts must have shape \(B, 2\)"):
        target.sample(jax.random.key(0), jnp.zeros(2), 3)
    with pytest.raises(ValueError, match="context_dim"):
        targets.make_target("spiral_gmm", context_dim=3)
    with pytest.raises(ValueError, match="num_components"):
        targets.make_target("banana", num_components=3)


def test_registry():
    assert set(targets.available()) >= {"moving_gmm", "spiral_gmm", "banana", "funnel", "planar"}
    with pytest.raises(ValueError, match="unknown target 'nope'.*moving_gmm"):
        targets.make_target("nope")
    with pytest.raises(TypeError, match="bad settings for target 'funnel'"):
        targets.make_target("funnel", widht=3)
    with pytest.raises(ValueError, match="already registered"):
        targets.register("funnel", targets.Funnel)
    assert targets.make_target("funnel", dim=4) == targets.Funnel(dim=4)


def test_targets_are_immutable_and_jit_friendly():
    target = targets.make_target("banana")
    with pytest.raises(AttributeError):
        target.num_components = 2
    x, c = jnp.ones((6, 2)), jnp.full((6, 1), 0.5)
    closed = jax.jit(lambda x, c: target.log_prob(x, c))
    static = jax.jit(lambda t, x, c: t.log_prob(x, c), static_argnums=0)
    np.testing.assert_allclose(static(targets.make_target("banana"), x, c), closed(x, c), rtol=1e-6)
    assert hash(target) == hash(targets.make_target("banana"))


def test_float64_inputs_give_float64():
    target = targets.make_target("moving_gmm")
    with jax.enable_x64(True):
        x, c = jnp.zeros((3, 2), jnp.float64), jnp.zeros((3, 1), jnp.float64)
        assert jax.jit(target.log_prob)(x, c).dtype == jnp.float64
