"""The conditional flow baseline: a normalised density that matches its samples and its
Jacobian, the identity at initialisation, and both objectives learning on tiny problems."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from avips_jax import config as config_lib
from avips_jax import targets
from avips_jax.baselines import flow, flow_layers, valid_pairs
from avips_jax.targets import talos_data

TINY_HIDDEN = (32, 32)

pytestmark = pytest.mark.usefixtures("fast_compiles")


def tiny_config(method: str, num_layers: int = 2, hidden=TINY_HIDDEN, num_steps: int = 300):
    c = config_lib.default_config()
    c.method = method
    c.baseline = flow.default_baseline_config()
    c.baseline.num_layers = num_layers
    c.baseline.hidden = hidden
    c.baseline.learning_rate = 3e-3
    c.train.num_steps = num_steps
    return c


def perturbed(params, key, scale):
    """Parameters moved off the identity initialisation (zero output layers) at random."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten(
        [
            p + scale * jax.random.normal(k, p.shape, p.dtype)
            for p, k in zip(leaves, keys, strict=True)
        ]
    )


@pytest.fixture(scope="module")
def planar3():
    """ML flow with SoftFlow on the 3-joint planar IK target (odd d: uneven coupling split)."""
    target = targets.make_target("ik", robot_name="planar_3")
    trainer = flow.make_trainer(tiny_config("flow"), target)
    return target, trainer, trainer.init(jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def gmm_flow():
    """Reverse-KL flow on the 2-D moving_gmm toy target."""
    target = targets.make_target("moving_gmm")
    trainer = flow.make_trainer(tiny_config("flow_reverse_kl", num_steps=200), target)
    return target, trainer, trainer.init(jax.random.PRNGKey(0))


def test_identity_at_init(planar3):
    target, trainer, state = planar3
    model = trainer.model(state)
    assert model.noise_input and model.has_density
    mid = 0.5 * (target.lower + target.upper)
    half = 0.5 * (target.upper - target.lower)
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (6, 3)))
    cond = jnp.asarray(np.random.default_rng(0).normal(size=(6, 4)), jnp.float32)
    x, log_det = model.module.apply(
        {"params": state.params}, z, cond, method=flow_layers.ConditionalFlow.forward_and_log_det
    )
    # The identity up to the fixed permutations (z -> z[..., p1] -> z[..., p1][..., p2] ...).
    order = np.arange(3)
    for perm in model.module.permutations:
        order = order[np.asarray(perm)]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(x, mid + half * z[:, order], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(log_det, np.sum(np.log(half)), rtol=1e-6)
    # The density in joint space: standard normal in (x - mid) / half, divided by prod(half).
    ctx = target.sample_contexts(jax.random.PRNGKey(2), 4)
    xs = jnp.asarray(np.random.default_rng(1).uniform(-3, 3, (4, 5, 3)), jnp.float32)
    ref = stats.norm.logpdf((np.asarray(xs) - mid) / half).sum(-1) - np.sum(np.log(half))
    np.testing.assert_allclose(model.log_prob(xs, ctx), ref, rtol=1e-5, atol=1e-5)


def test_latent_scale_sets_the_sample_spread(planar3):
    target, trainer, state = planar3
    model = trainer.model(state)  # identity flow: x = mid + half * latent_scale * eps
    half = 0.5 * (target.upper - target.lower)
    ctx = target.sample_contexts(jax.random.PRNGKey(3), 2)
    key = jax.random.PRNGKey(4)
    for scale, x in (
        (0.75, model.sample(key, ctx, 4000)),  # the config default
        (0.3, model.sample(key, ctx, 4000, latent_scale=0.3)),
        (1.0, model.sample_and_log_prob(key, ctx, 4000)[0]),
    ):
        std = np.std(np.asarray(x) / half, axis=1)  # (T, d)
        np.testing.assert_allclose(std, scale, rtol=0.06)
    with pytest.raises(ValueError, match="latent_scale must be > 0"):
        model.sample(key, ctx, 3, latent_scale=0.0)


def test_log_det_matches_autodiff_jacobian_and_inverts(planar3):
    _, trainer, state = planar3
    module = trainer.model(state).module
    params = {"params": perturbed(state.params, jax.random.PRNGKey(5), 0.3)}
    cond = jax.random.normal(jax.random.PRNGKey(6), (5, 4))
    z = jax.random.normal(jax.random.PRNGKey(7), (5, 3))

    def forward(zi, ci):
        return module.apply(
            params, zi[None], ci[None], method=flow_layers.ConditionalFlow.forward_and_log_det
        )[0][0]

    x, log_det = module.apply(
        params, z, cond, method=flow_layers.ConditionalFlow.forward_and_log_det
    )
    jac = jax.vmap(jax.jacfwd(forward))(z, cond)  # (5, 3, 3)
    assert not np.allclose(jac, jac[:, :1, :1] * np.eye(3))  # not a diagonal (identity-like) map
    np.testing.assert_allclose(log_det, jnp.linalg.slogdet(jac)[1], rtol=1e-4, atol=1e-4)
    z_back, inv_log_det = module.apply(
        params, x, cond, method=flow_layers.ConditionalFlow.inverse_and_log_det
    )
    np.testing.assert_allclose(z_back, z, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(inv_log_det, -log_det, rtol=1e-5, atol=1e-4)


def test_density_is_normalised_and_matches_samples(gmm_flow):
    target, trainer, state = gmm_flow
    model = trainer.model(state.replace(params=perturbed(state.params, jax.random.PRNGKey(8), 0.1)))
    ctx = jnp.array([[0.3]])
    x, log_q = model.sample_and_log_prob(jax.random.PRNGKey(9), ctx, 20000)
    np.testing.assert_allclose(log_q, model.log_prob(x, ctx), rtol=1e-4, atol=1e-4)
    xs = np.asarray(x[0])
    lo, hi = np.min(xs, 0), np.max(xs, 0)
    lo, hi = lo - 0.5 * (hi - lo), hi + 0.5 * (hi - lo)
    g0, g1 = np.linspace(lo[0], hi[0], 400), np.linspace(lo[1], hi[1], 400)
    grid = np.stack(np.meshgrid(g0, g1, indexing="ij"), -1).reshape(1, -1, 2)
    dens = np.exp(np.asarray(model.log_prob(jnp.asarray(grid, jnp.float32), ctx)[0]))
    cell = (g0[1] - g0[0]) * (g1[1] - g1[0])
    np.testing.assert_allclose(np.sum(dens) * cell, 1.0, atol=1e-2)
    # Not a Gaussian any more: the perturbed flow's density differs from the identity flow's.
    identity = trainer.model(state).log_prob(jnp.asarray(grid, jnp.float32), ctx)[0]
    assert np.max(np.abs(np.log(dens + 1e-30) - np.asarray(identity))[dens > 1e-4]) > 0.5
    # Moments of the samples agree with the moments of the density.
    w = dens * cell
    mean = np.sum(w[:, None] * grid[0], 0)
    std = np.sqrt(np.sum(w[:, None] * (grid[0] - mean) ** 2, 0))
    np.testing.assert_allclose(xs.mean(0), mean, atol=0.05 * np.max(std))
    np.testing.assert_allclose(xs.std(0), std, rtol=0.03)  # latent scale 0.9: -10%


def _position_error(target, model, ctx, key):
    x = model.sample(key, ctx, 32)
    return float(jnp.mean(target.position_error(x, ctx[:, None])))


def test_ml_training_reduces_nll_and_position_error():
    target = targets.make_target("ik", robot_name="planar_2")
    trainer = flow.make_trainer(tiny_config("flow", num_layers=3, hidden=(64, 64)), target)
    state = trainer.init(jax.random.PRNGKey(0))
    q = jax.random.uniform(jax.random.PRNGKey(1), (64, 1, 2), minval=-np.pi, maxval=np.pi)
    ctx = target.contexts_from_joints(q[:, 0])
    key = jax.random.PRNGKey(2)
    nll0 = -float(jnp.mean(trainer.model(state).log_prob(q, ctx)))
    err0 = _position_error(target, trainer.model(state), ctx, key)
    dummy = jnp.zeros((128, target.context_dim))  # "flow" draws its own pairs; B = 128
    for _ in range(300):
        state, metrics = trainer.step(state, dummy)
    assert set(metrics) >= {"loss", "grad_norm", "skipped"}
    assert int(state.num_skipped) == 0
    nll1 = -float(jnp.mean(trainer.model(state).log_prob(q, ctx)))
    err1 = _position_error(target, trainer.model(state), ctx, key)
    assert nll1 < nll0 - 2.0, (nll0, nll1)
    assert err1 < 0.6 * err0, (err0, err1)


def _elbo(target, model, ctx, key):
    x, log_q = model.sample_and_log_prob(key, ctx, 256)
    return float(jnp.mean(target.log_prob(x, ctx[:, None]) - log_q))


def test_reverse_kl_raises_the_elbo(gmm_flow):
    target, trainer, state = gmm_flow
    state = jax.device_get(state)  # host copies: the step donates (invalidates) its input
    ctx = target.sample_contexts(jax.random.PRNGKey(10), 16)
    key = jax.random.PRNGKey(11)
    elbo0 = _elbo(target, trainer.model(state), ctx, key)
    batches = target.sample_contexts(jax.random.PRNGKey(12), 200 * 32).reshape(200, 32, -1)
    for contexts in batches:
        state, metrics = trainer.step(state, contexts)
    assert "elbo" in metrics and np.isfinite(float(metrics["elbo"]))
    elbo1 = _elbo(target, trainer.model(state), ctx, key)
    # moving_gmm is normalised: the ELBO is <= log Z = 0 (up to Monte Carlo noise).
    assert elbo0 < -20.0 and -4.0 < elbo1 < 0.1, (elbo0, elbo1)


def test_shapes_and_bad_input_are_named(gmm_flow):
    target, trainer, state = gmm_flow
    state = jax.device_get(state)  # host copies: the step donates (invalidates) its input
    model = trainer.model(state)
    key = jax.random.PRNGKey(0)
    ctx = target.sample_contexts(key, 3)
    assert model.sample(key, ctx, 5).shape == (3, 5, 2)
    assert model.log_prob(jnp.zeros((3, 4, 2)), ctx).shape == (3, 4)
    assert model.num_parameters == sum(np.size(p) for p in jax.tree.leaves(state.params))
    with pytest.raises(ValueError, match=r"contexts must have shape \(T, 1\)"):
        model.sample(key, jnp.zeros((3, 2)), 4)
    with pytest.raises(ValueError, match="n must be >= 1"):
        model.sample(key, ctx, 0)
    with pytest.raises(ValueError, match="x must have shape"):
        model.log_prob(jnp.zeros((2, 4, 2)), ctx)
    with pytest.raises(ValueError, match=r"contexts must have shape \(T, 1\)"):
        trainer.step(state, jnp.zeros((4,)))
    with pytest.raises(ValueError, match="contexts_from_joints"):
        flow.make_trainer(tiny_config("flow"), target)
    with pytest.raises(ValueError, match="config.method must be one of"):
        flow.make_trainer(tiny_config("gan"), target)
    bad = tiny_config("flow_reverse_kl")
    bad.baseline.latent_scale = -1.0
    with pytest.raises(ValueError, match="latent_scale"):
        flow.make_trainer(bad, target)


def test_non_finite_step_is_skipped(gmm_flow):
    target, trainer, state = gmm_flow
    state = jax.device_get(state)  # host copies: the step donates (invalidates) its input
    ctx = target.sample_contexts(jax.random.PRNGKey(0), 32)
    bad = ctx.at[3, 0].set(jnp.nan)
    new, metrics = trainer.step(state, bad)
    assert int(metrics["skipped"]) == 1 and int(new.num_skipped) == 1 and int(new.step) == 1
    for a, b in zip(
        jax.tree.leaves((new.params, new.opt_state)),
        jax.tree.leaves((state.params, state.opt_state)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    new, metrics = trainer.step(new, ctx)
    assert int(metrics["skipped"]) == 0 and int(new.num_skipped) == 1
    changed = [
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params), strict=True)
    ]
    assert any(changed)


def test_ml_step_on_panda_pose_contexts():
    """d = 7 (odd) and 7-D pose contexts (position + quaternion) through the ML objective."""
    target = targets.make_target("ik", robot_name="panda", context="pose")
    trainer = flow.make_trainer(tiny_config("flow", hidden=(8,)), target)
    state = trainer.init(jax.random.PRNGKey(0))
    state, metrics = trainer.step(state, jnp.zeros((16, 7)))
    assert np.isfinite(float(metrics["loss"])) and int(state.num_skipped) == 0
    model = trainer.model(state)
    ctx = target.sample_contexts(jax.random.PRNGKey(1), 2)
    x = model.sample(jax.random.PRNGKey(2), ctx, 3)
    assert x.shape == (2, 3, 7) and model.log_prob(x, ctx).shape == (2, 3)
    assert np.all(np.isfinite(np.asarray(model.log_prob(x, ctx))))


@pytest.mark.slow  # 150 flow steps on the 34-DOF TALOS (~90 s on 2 busy cores)
def test_ml_flow_on_talos_learns_from_one_pool_of_standing_postures(monkeypatch):
    """TALOS has no contexts_from_joints: "flow" draws its pairs from `num_valid` standing
    postures, made once at the first step (not at make_trainer or init)."""
    target = targets.make_target("talos")
    made = []

    def recording(*args):
        made.append(real(*args))
        return made[-1]

    real = valid_pairs.valid_pairs
    monkeypatch.setattr(valid_pairs, "valid_pairs", recording)
    config = tiny_config("flow", hidden=(64,))
    config.baseline.num_valid = 48
    trainer = flow.make_trainer(config, target)
    state = trainer.init(jax.random.PRNGKey(0))
    assert not made
    batch = jnp.zeros((32, target.context_dim))  # sets B only
    state, _ = trainer.step(state, batch)
    (pool_c, pool_q) = made[0]
    assert pool_q.shape == (48, 34) and np.all(np.asarray(talos_data.stance_checks(target, pool_q)))

    def nll(state):
        return -float(jnp.mean(trainer.model(state).log_prob(pool_q[:, None], pool_c)))

    nll0 = nll(state)
    for _ in range(150):
        state, metrics = trainer.step(state, batch)
    assert len(made) == 1 and int(state.num_skipped) == 0
    assert nll(state) < nll0 - 10.0, (nll0, nll(state))
