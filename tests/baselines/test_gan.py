"""The Lembono-style generator ensemble (avips_jax/baselines/gan.py) on a 3-link planar IK arm."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avips_jax import config as config_lib
from avips_jax import targets
from avips_jax.baselines import gan

pytestmark = pytest.mark.usefixtures("fast_compiles")

E, L, HIDDEN = 4, 4, (32, 32)
TRAIN_STEPS, BATCH = 400, 64


def make_config(method: str, **overrides):
    config = config_lib.default_config()
    config.method = method
    config.baseline = gan.default_baseline_config()
    b = config.baseline
    b.num_generators, b.latent_dim, b.generator_hidden = E, L, HIDDEN
    b.discriminator_hidden, b.num_valid = (16, 16), 4096
    b.update(overrides)
    return config


@functools.cache
def planar_ik():
    """3 revolute joints in [-pi, pi], links of 1/3, position contexts (3,) with z = 0."""
    return targets.make_target("ik", robot_name="planar_3")


@functools.cache
def trainer(method: str):
    return gan.make_trainer(make_config(method), planar_ik())


def eval_contexts(n=64, seed=99):
    return planar_ik().sample_contexts(jax.random.PRNGKey(seed), n)


def quality(model, contexts, n=16):
    """(mean log p, mean position error) of n samples per context."""
    target = planar_ik()
    x = model.sample(jax.random.PRNGKey(1), contexts, n)
    c = contexts[:, None, :]
    return float(jnp.mean(target.log_prob(x, c))), float(jnp.mean(target.position_error(x, c)))


@functools.cache
def trained(method: str):
    """(initial state, state after TRAIN_STEPS, last metrics, all metrics) of `method`."""
    tr = trainer(method)
    init = tr.init(jax.random.PRNGKey(0))
    state = jax.tree.map(jnp.copy, init)  # the step donates (invalidates) its input state
    history = []
    batches = planar_ik().sample_contexts(jax.random.PRNGKey(5), TRAIN_STEPS * BATCH)
    for contexts in np.asarray(batches).reshape(TRAIN_STEPS, BATCH, -1):
        state, metrics = tr.step(state, contexts)
        history.append(jax.device_get(metrics))
    return init, state, history


@pytest.mark.parametrize("method", gan.METHODS)
def test_training_satisfies_the_target_better_than_init(method):
    init, state, history = trained(method)
    tr, contexts = trainer(method), eval_contexts()
    logp0, err0 = quality(tr.model(init), contexts)
    logp1, err1 = quality(tr.model(state), contexts)
    assert int(state.step) == TRAIN_STEPS and int(state.num_skipped) == 0
    assert logp1 > logp0 + 0.5 * abs(logp0), (logp0, logp1)  # from about -7000 to about -700
    assert err1 < 0.5 * err0, (err0, err1)  # mean position error (arm reach 1)


def test_discriminator_metrics_and_loss_composition():
    _, _, history = trained("gan")
    b = make_config("gan").baseline
    for m in history[:: TRAIN_STEPS // 8]:
        assert 0.0 <= m["disc_accuracy"] <= 1.0
        assert np.isfinite(m["disc_loss"]) and m["disc_loss"] > 0
        expected = b.weight_nll * m["nll"] + b.weight_gan * m["gen_gan"] + m["disc_loss"]
        np.testing.assert_allclose(m["loss"], expected, rtol=1e-5)
    # The discriminator learns to tell the generated pairs from the valid ones (chance = 0.5).
    assert np.mean([m["disc_accuracy"] for m in history[-50:]]) > 0.6
    _, _, plain = trained("gan_no_disc")
    assert "disc_accuracy" not in plain[-1] and "gen_gan" not in plain[-1]
    np.testing.assert_allclose(plain[-1]["loss"], b.weight_nll * plain[-1]["nll"], rtol=1e-6)


@pytest.mark.parametrize("n", [1, 7])
def test_samples_have_shape_t_n_d_and_are_finite(n):
    _, state, _ = trained("gan")
    model = trainer("gan").model(state)
    x, ids = model.sample_with_components(jax.random.PRNGKey(3), eval_contexts(5), n)
    assert x.shape == (5, n, 3) and ids.shape == (5, n)
    assert np.all(np.isfinite(x))
    assert np.all((ids >= 0) & (ids < E))
    np.testing.assert_array_equal(model.sample(jax.random.PRNGKey(3), eval_contexts(5), n), x)


def bias_only_model(target):
    """Members whose output is midpoint + (e + 1) * 0.1 * (1, 2, 3), whatever z and c."""
    tr = gan.make_trainer(make_config("gan_no_disc"), target)
    params = tr.init(jax.random.PRNGKey(0)).params
    out = params[gan.GENERATOR]["members"]["out"]
    offsets = 0.1 * np.arange(1, E + 1)[:, None] * np.arange(1, target.dim + 1)[None, :]
    params[gan.GENERATOR]["members"]["out"] = {
        "kernel": jnp.zeros_like(out["kernel"]),
        "bias": jnp.asarray(offsets, out["bias"].dtype),
    }
    state = tr.init(jax.random.PRNGKey(0)).replace(params=params)
    return tr.model(state), offsets


def test_each_sample_comes_from_its_generator_and_generators_are_uniform():
    target = planar_ik()
    model, offsets = bias_only_model(target)
    mid = 0.5 * (target.lower + target.upper)
    num_t, n = 3000, 7  # 7 = 4 + 3: one member gets one draw less in each context
    x, ids = model.sample_with_components(jax.random.PRNGKey(4), eval_contexts(num_t), n)
    np.testing.assert_allclose(x, mid + offsets[np.asarray(ids)], atol=1e-6)
    counts = np.stack([np.sum(ids == e, axis=1) for e in range(E)], axis=1)  # (T, E)
    assert np.all(counts.sum(1) == n) and np.all(counts.max(1) - counts.min(1) <= 1)
    # Every sample position picks each member with probability 1/E (binomial sd ~ 0.008 here).
    for position in (0, n - 1):
        freq = np.bincount(np.asarray(ids[:, position]), minlength=E) / num_t
        np.testing.assert_allclose(freq, 1.0 / E, atol=0.04)
    freq_all = np.bincount(np.asarray(ids).ravel(), minlength=E) / ids.size
    np.testing.assert_allclose(freq_all, 1.0 / E, atol=0.015)


@pytest.mark.parametrize("when", ["init", "trained"])
def test_ensemble_members_differ(when):
    init, state, _ = trained("gan_no_disc")
    model = trainer("gan_no_disc").model(init if when == "init" else state)
    z = jnp.broadcast_to(jax.random.normal(jax.random.PRNGKey(0), (1, 32, 1, L)), (E, 32, 1, L))
    x = model.module.apply({"params": model.params}, z, eval_contexts(32)[:, None, :])
    assert x.shape == (E, 32, 1, 3)
    for a in range(E):
        for b in range(a + 1, E):
            assert float(jnp.mean(jnp.linalg.norm(x[a] - x[b], axis=-1))) > 1e-2, (a, b)
    # The same member gives different outputs for different latents (the latent is used).
    xm = model.member_samples(jax.random.PRNGKey(1), eval_contexts(32), 2)
    assert float(jnp.min(jnp.linalg.norm(xm[:, :, 0] - xm[:, :, 1], axis=-1))) > 0


def test_context_shape_errors():
    tr = trainer("gan")
    state = tr.init(jax.random.PRNGKey(0))
    model = tr.model(state)
    for bad in (jnp.zeros((4, 2)), jnp.zeros((3,)), jnp.zeros((2, 4, 3))):
        with pytest.raises(ValueError, match=r"contexts must have shape \(T, 3\)"):
            tr.step(state, bad)
        with pytest.raises(ValueError, match=r"contexts must have shape \(T, 3\)"):
            model.sample(jax.random.PRNGKey(0), bad, 2)
    with pytest.raises(ValueError, match="n must be >= 1"):
        model.sample(jax.random.PRNGKey(0), eval_contexts(2), 0)


@pytest.mark.parametrize("method", gan.METHODS)
def test_non_finite_step_is_skipped(method):
    tr = trainer(method)
    state = tr.init(jax.random.PRNGKey(0))
    contexts = eval_contexts(BATCH).at[3, 1].set(jnp.nan)
    state = jax.device_get(state)  # host copies: the step donates (invalidates) its input
    new, metrics = tr.step(state, contexts)
    assert int(metrics["skipped"]) == 1 and not bool(metrics["contexts_finite"])
    assert int(new.num_skipped) == 1 and int(new.step) == 1
    jax.tree.map(np.testing.assert_array_equal, new.params, state.params)
    jax.tree.map(np.testing.assert_array_equal, new.opt_state, state.opt_state)
    new = jax.device_get(new)
    after, metrics = tr.step(new, eval_contexts(BATCH))
    assert int(metrics["skipped"]) == 0 and int(after.num_skipped) == 1
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), after.params, new.params)
    assert all(jax.tree.leaves(changed))


def test_no_density_and_parameter_count():
    model = trainer("gan").model(trainer("gan").init(jax.random.PRNGKey(0)))
    assert model.has_density is False
    with pytest.raises(NotImplementedError, match="no density"):
        model.log_prob(jnp.zeros((2, 3, 3)), eval_contexts(2))
    d, d_c, (h1, h2) = 3, 3, HIDDEN
    per_member = (L + d_c) * h1 + h1 + h1 * h2 + h2 + h2 * d + d
    assert model.num_parameters == E * per_member  # the generators only, not the discriminator


def test_discriminator_variant_needs_contexts_from_joints():
    with pytest.raises(ValueError, match="gan_no_disc"):
        gan.make_trainer(
            make_config("gan"),
            targets.make_target("planar", num_links=3, min_radius=1.0, max_radius=2.0),
        )


def test_no_disc_runs_on_a_toy_target():
    target = targets.make_target("moving_gmm")
    tr = gan.make_trainer(make_config("gan_no_disc"), target)
    state, metrics = tr.step(
        tr.init(jax.random.PRNGKey(0)), target.sample_contexts(jax.random.PRNGKey(1), 8)
    )
    assert int(metrics["skipped"]) == 0 and np.isfinite(metrics["loss"])
    x = tr.model(state).sample(
        jax.random.PRNGKey(2), target.sample_contexts(jax.random.PRNGKey(3), 2), 5
    )
    assert x.shape == (2, 5, target.dim) and np.all(np.isfinite(x))


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="config.method"):
        gan.make_trainer(make_config("flow"), planar_ik())
    with pytest.raises(ValueError, match="num_generators"):
        gan.make_trainer(make_config("gan_no_disc", num_generators=0), planar_ik())
    with pytest.raises(ValueError, match="generator_lr"):
        gan.make_trainer(make_config("gan_no_disc", generator_lr=0.0), planar_ik())
