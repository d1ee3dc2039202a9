"""AmortizedGMM: the (T, n, d) sampling / density interface agrees with the gmm functions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avips_jax import config, gmm, model, sampling_model, train
from avips_jax.settings import Settings
from avips_jax.targets import make_target

pytestmark = pytest.mark.usefixtures("fast_compiles")  # compile time dominates


@pytest.fixture(scope="module")
def tiny():
    c = config.default_config()
    c.model.component_hidden = (8,)
    c.model.gate_hidden = (8,)
    target = make_target("moving_gmm")
    settings = Settings.from_config(c)
    module = train.make_model(settings.network, target)
    opt = train.make_optimizer(settings.schedule)
    state = train.create_train_state(settings, module, target, opt, jax.random.PRNGKey(0))
    return model.AmortizedGMM.from_train_state(state, module, target.context_dim), target


def test_shapes_and_density_match_gmm(tiny):
    m, target = tiny
    ctx = target.sample_contexts(jax.random.PRNGKey(1), 5)
    x, ids = m.sample_with_components(jax.random.PRNGKey(2), ctx, 7)
    assert x.shape == (5, 7, target.dim) and ids.shape == (5, 7)
    assert np.all(np.asarray(m.active)[np.asarray(ids)])  # never an inactive slot
    params = m.gmm_params(ctx)
    ref = gmm.log_prob(params, m.active, jnp.swapaxes(x, 0, 1))  # (n, T)
    np.testing.assert_allclose(m.log_prob(x, ctx), ref.T, rtol=1e-5, atol=1e-5)
    w = np.asarray(m.weights(ctx))
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    assert np.all(w[:, ~np.asarray(m.active)] == 0.0)
    assert m.num_active == int(np.sum(np.asarray(m.active)))
    assert m.num_parameters == sum(p.size for p in jax.tree.leaves(m.variables["params"]))


def test_bad_shapes_are_named(tiny):
    m, target = tiny
    with pytest.raises(ValueError, match=r"contexts must have shape \(T, 1\)"):
        m.sample(jax.random.PRNGKey(0), jnp.zeros((3, 2)), 4)
    with pytest.raises(ValueError, match="n must be >= 1"):
        m.sample(jax.random.PRNGKey(0), jnp.zeros((3, 1)), 0)
    with pytest.raises(ValueError, match="x must have shape"):
        m.log_prob(jnp.zeros((2, 4, target.dim)), jnp.zeros((3, 1)))


def test_latent_scale_scales_the_spread_about_the_same_means_and_keeps_the_density(tiny):
    m, target = tiny
    ctx = target.sample_contexts(jax.random.PRNGKey(1), 4)
    key = jax.random.PRNGKey(3)
    x1, ids1 = m.sample_with_components(key, ctx, 50)
    same = m.with_latent_scale(1.0).sample_with_components(key, ctx, 50)
    np.testing.assert_array_equal(same[0], x1)  # scale 1 is the density's own draw
    wide = m.with_latent_scale(2.0)
    x2, ids2 = wide.sample_with_components(key, ctx, 50)
    np.testing.assert_array_equal(ids2, ids1)  # same components, same noise, twice the offset
    means = np.asarray(m.gmm_params(ctx).means)  # (T, K, d)
    picked = np.take_along_axis(means, np.asarray(ids1)[..., None], axis=1)  # (T, n, d)
    np.testing.assert_allclose(x2 - picked, 2.0 * (x1 - picked), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(wide.log_prob(x1, ctx), m.log_prob(x1, ctx))
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="latent_scale"):
            m.with_latent_scale(bad)


def test_is_a_sampling_model_whose_draws_follow_the_density_only_at_scale_one(tiny):
    m, target = tiny
    assert isinstance(m, sampling_model.SamplingModel) and m.has_density
    assert m.samples_follow_density
    wide = m.with_latent_scale(1.5)
    assert not wide.samples_follow_density
    ctx = target.sample_contexts(jax.random.PRNGKey(1), 3)
    key = jax.random.PRNGKey(4)
    x, log_q = wide.sample_and_log_prob(key, ctx, 6)  # draws of q itself, not of the wide one
    np.testing.assert_array_equal(x, m.sample(key, ctx, 6))
    np.testing.assert_allclose(log_q, m.log_prob(x, ctx), rtol=1e-6)
