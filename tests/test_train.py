"""End-to-end tests: the assembled aVIPS method works, not just runs."""

import dataclasses
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avips_jax import evaluation, fit, gmm, methods, targets, train
from avips_jax.settings import Settings
from avips_jax.targets import toy
from experiments.configs import toy as toy_configs
from tests.experiments import cli

HELDOUT = jnp.linspace(-0.95, 0.95, 16)[:, None]  # contexts never sampled exactly in training


def _small_config(**overrides):
    c = toy_configs.get_config("moving_gmm")
    c.model.num_components = 3
    c.model.initial_components = 2
    c.model.component_hidden = (16,)
    c.model.gate_hidden = (16,)
    c.train.batch_contexts = 8
    c.train.samples_per_component = 2
    c.train.num_steps = 5
    c.train.log_every = 1
    c.components.add = False
    c.components.remove = False
    for key, value in overrides.items():
        node = c
        *path, last = key.split(".")
        for name in path:
            node = node[name]
        node[last] = value
    return c


@pytest.fixture(scope="module")
def moving_gmm_run():
    return fit.fit(toy_configs.get_config("moving_gmm"), progress=False)


def test_finds_every_mode_on_heldout_contexts(moving_gmm_run):
    res = moving_gmm_run
    params = res.module.apply(res.state.variables, HELDOUT)
    dist = evaluation.mode_distances(
        params, res.state.active, res.target.modes(HELDOUT), res.target.mode_stds(HELDOUT)
    )
    assert dist.shape == (16, 4)
    # A missed mode is several stds from every component mean; the worst distance of a found
    # one varies with the seed and XLA's last bits (0.07-0.21 std over seeds 0-2).
    assert np.all(dist < 0.25), f"worst mode distance {dist.max():.3f} std"
    # It started with 2 slots: the missing modes were found by component adding.
    assert any(e["event"] == "added" for e in res.events)


def test_elbo_within_0p1_nats_of_log_z(moving_gmm_run):
    res = moving_gmm_run
    params = res.module.apply(res.state.variables, HELDOUT)
    gap = evaluation.elbo_per_context(
        params, res.state.active, res.target, HELDOUT, jax.random.PRNGKey(0), 4000
    )
    assert np.all(gap > -0.1), gap
    assert np.all(gap < 0.02), gap  # ELBO <= log Z up to Monte-Carlo noise
    assert res.state.num_skipped == 0


@pytest.mark.slow  # 2500 steps (~50 s); test_adaptation.py unit-tests the removal step
def test_removal_prunes_surplus_components():
    c = toy_configs.get_config("moving_gmm")
    c.model.initial_components = 8  # twice the true number of modes
    c.components.add = False
    c.train.num_steps = 2500
    res = fit.fit(c, progress=False)
    n_active = int(jnp.sum(res.state.active))
    assert 3 <= n_active <= 5, (n_active, res.events)
    assert sum(e["event"] == "removed" for e in res.events) == 8 - n_active


@pytest.mark.usefixtures("fast_compiles")  # three 5-step runs: compilation is the cost
def test_same_seed_same_result():
    a = fit.fit(_small_config(), progress=False)
    target = targets.from_config(_small_config())
    trainer = methods.make_trainer(_small_config(), target)  # built anew, shared with c below
    b = fit.fit(_small_config(), target=target, trainer=trainer, progress=False)
    for x, y in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params), strict=True):
        np.testing.assert_array_equal(x, y)
    # The seed reaches the state and the contexts, not the trainer: c reuses b's compiled step.
    c = fit.fit(_small_config(seed=1), target=target, trainer=trainer, progress=False)
    assert not np.allclose(
        a.state.params["gate"]["head"]["bias"], c.state.params["gate"]["head"]["bias"]
    )


@dataclasses.dataclass(frozen=True)
class _NaNContexts(toy.MovingGMM):
    def sample_contexts(self, key, n):
        return super().sample_contexts(key, n).at[0, 0].set(jnp.nan)


@dataclasses.dataclass(frozen=True)
class _NaNForPositiveContexts(toy.MovingGMM):
    def log_prob(self, x, c):
        lp = super().log_prob(x, c)
        return jnp.where(jnp.asarray(c)[..., 0] > 0, jnp.nan, lp)


def test_nan_context_raises_a_clear_error():
    with pytest.raises(fit.NonFiniteContextError, match="NaN"):
        fit.fit(_small_config(), target=_NaNContexts(), progress=False)


def test_nan_target_skips_the_update_and_never_trains_on_nan():
    target = _NaNForPositiveContexts()
    _, _, _, state, step_fn = fit.build(_small_config(), target)
    good = jnp.full((8, 1), -0.5)
    bad = good.at[3, 0].set(0.5)
    state1, m1 = step_fn(state, good)
    assert int(m1["skipped"]) == 0
    params1 = jax.device_get(state1.params)  # the step donates (invalidates) its input state
    state2, m2 = step_fn(state1, bad)
    assert int(m2["skipped"]) == 1 and int(state2.num_skipped) == 1
    for x, y in zip(jax.tree.leaves(state2.params), jax.tree.leaves(params1), strict=True):
        np.testing.assert_array_equal(x, y)
    state3, _ = step_fn(state2, good)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state3.params))
    # One compilation for all three calls (static shapes, no retracing).
    assert step_fn._cache_size() == 1


_MULTI_DEVICE_SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np
    from jax.sharding import Mesh
    from avips_jax import fit, loop
    from tests.test_train import _small_config
    assert jax.device_count() == 4, jax.devices()
    c = _small_config()
    mesh = Mesh(np.array(jax.devices()), ("data",))
    contexts = np.zeros((8, 1), np.float32)
    assert len(loop.shard_contexts(mesh, contexts).sharding.device_set) == 4
    # The training loop shards the contexts and replicates the state itself when given the
    # mesh, and five steps on 4 devices give the single-device parameters.
    plain = fit.fit(c, progress=False)
    meshed = fit.fit(c, mesh=mesh, progress=False)
    for a, b in zip(jax.tree.leaves(meshed.state.params), jax.tree.leaves(plain.state.params)):
        assert len(a.sharding.device_set) == 4, a.sharding
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    ref, out = plain.history[-1]["loss"], meshed.history[-1]["loss"]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    print("OK", float(ref), float(out))
    """
)


# ~35 s (a subprocess with 4 host devices); the default suite trains data-parallel over two
# devices in tests/test_distributed.py. Slow for CI's 15-minute budget.
@pytest.mark.slow
def test_multi_device_step_matches_single_device():
    env = cli.module_env()  # five-step runs: XLA's optimisations off, compilation is the cost
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    proc = subprocess.run(
        [sys.executable, "-c", _MULTI_DEVICE_SCRIPT],
        env=env,
        cwd=cli.ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout


def test_heavy_components_counts_weights_above_one_percent():
    params = gmm.GMMParams(
        logits=jnp.log(jnp.array([[0.5, 0.495, 0.005], [0.96, 0.02, 0.02]])),
        means=jnp.zeros((2, 3, 1)),
        chols=jnp.ones((2, 3, 1, 1)),
    )
    np.testing.assert_array_equal(evaluation.heavy_components(params, jnp.ones(3, bool)), [2, 3])


@pytest.mark.slow  # two compilations of the loss gradient (~30 s); the math is in test_objectives
def test_a_slot_without_weight_learns_only_with_a_uniform_component_share():
    """With the thesis weighting (share 0) a slot whose weight is ~e^-40 on every context gets no
    component gradient; with share 1 it gets one like the other slots (objectives.py)."""
    c = _small_config(**{"projection.enabled": False, "trust_region.adaptive": False})
    target, module, _, state, _ = fit.build(c)
    slots = {**state.slots, "logit_offset": state.slots["logit_offset"].at[1].set(-40.0)}
    contexts = target.sample_contexts(jax.random.PRNGKey(0), 8)

    def slot_grad_norms(share):
        c.train.uniform_component_share = share
        loss_fn = train.make_loss_fn(Settings.from_config(c), module, target)
        grads = jax.grad(
            lambda p: loss_fn(
                p, slots, None, state.active, state.trust_region, contexts, jax.random.PRNGKey(1)
            )[0]
        )(state.params)["components"]
        return [
            float(jnp.sqrt(sum(jnp.sum(g[k] ** 2) for g in jax.tree.leaves(grads)))) for k in (0, 1)
        ]

    weighted, uniform = slot_grad_norms(0.0), slot_grad_norms(1.0)
    assert weighted[0] > 1e-3 and weighted[1] < 1e-6 * weighted[0], weighted
    assert uniform[0] > 1e-3 and uniform[1] > 1e-2 * uniform[0], uniform


@pytest.mark.slow  # a lever off in every preset; slow for CI's 15-minute budget
@pytest.mark.usefixtures("fast_compiles")  # compilation is the cost
def test_gate_refit_phase_freezes_the_components_and_restarts_the_gate_decay():
    c = _small_config(**{"train.num_steps": 10, "train.gate_refit_fraction": 0.4})
    assert Settings.from_config(c).schedule.gate_refit_start == 6
    _, _, _, state, _ = fit.build(c)
    optimizer = train.make_optimizer(Settings.from_config(c).schedule)
    params, opt_state = state.params, optimizer.init(state.params)
    grads = jax.tree.map(jnp.ones_like, params)  # constant: each Adam step moves by ~lr(t)
    moves = []
    for _ in range(10):
        updates, opt_state = optimizer.update(grads, opt_state, params)
        moves.append(
            {
                name: float(
                    jnp.max(jnp.abs(jnp.concatenate([u.ravel() for u in jax.tree.leaves(sub)])))
                )
                for name, sub in updates.items()
            }
        )
        params = jax.tree.map(jnp.add, params, updates)
    gate, components = [m["gate"] for m in moves], [m["components"] for m in moves]
    assert all(m > 0 for m in components[:6]) and all(m == 0 for m in components[6:])
    np.testing.assert_allclose(gate[0], c.train.gate_lr, rtol=1e-3)
    np.testing.assert_allclose(gate[6], c.train.gate_lr, rtol=1e-3)  # the restart
    assert gate[5] < 0.5 * gate[0] and gate[9] < 0.5 * gate[6]  # cosine decays within each


@pytest.mark.slow  # a lever off in every preset; slow for CI's 15-minute budget
@pytest.mark.usefixtures("fast_compiles")  # compilation is the cost
def test_no_component_is_added_in_the_gate_refit_phase():
    c = _small_config(
        **{
            "train.num_steps": 8,
            "train.gate_refit_fraction": 0.5,
            "model.num_components": 8,
            "model.initial_components": 1,
            "components.add": True,
            "components.add_every": 1,
            "components.add_until": 1.0,
        }
    )
    added = [e["step"] for e in fit.fit(c, progress=False).events if e["event"] == "added"]
    assert added and max(added) <= 4, added


def test_gate_refit_fraction_is_checked():
    from avips_jax import config as config_lib

    with pytest.raises(ValueError, match="gate_refit_fraction"):
        config_lib.validate_config(_small_config(**{"train.gate_refit_fraction": 1.0}))


@pytest.mark.usefixtures("fast_compiles")
@pytest.mark.parametrize("hold", [1, 3])
def test_old_model_advances_every_hold_old_steps(hold):
    """old_params become the pre-update parameters at steps hold-1, 2 hold-1, ... and stay fixed
    in between (hold 1: the previous step's parameters, the thesis)."""
    c = _small_config(**{"projection.hold_old_steps": hold, "projection.covariance": True})
    _, _, _, state, step_fn = fit.build(c)
    contexts = jnp.linspace(-0.5, 0.5, c.train.batch_contexts)[:, None]
    leaf = lambda tree: np.asarray(jax.tree.leaves(tree)[0])
    for t in range(7):
        before = jax.device_get(state)  # the step donates (invalidates) its input state
        state, metrics = step_fn(state, contexts)
        assert int(metrics["skipped"]) == 0
        if (t + 1) % hold == 0:
            np.testing.assert_array_equal(leaf(state.old_params), leaf(before.params))
        else:
            np.testing.assert_array_equal(leaf(state.old_params), leaf(before.old_params))
        assert not np.array_equal(leaf(state.params), leaf(before.params))


def test_projection_switches_are_checked():
    from avips_jax import config as config_lib

    with pytest.raises(ValueError, match="hold_old_steps"):
        config_lib.validate_config(_small_config(**{"projection.hold_old_steps": 0}))
    with pytest.raises(ValueError, match="covariance_gradient"):
        config_lib.validate_config(_small_config(**{"projection.covariance_gradient": "none"}))


def test_coverage_settings_are_checked():
    from avips_jax import config as config_lib

    with pytest.raises(ValueError, match="eval.coverage_reference"):
        config_lib.validate_config(_small_config(**{"eval.coverage_reference": 0}))
    with pytest.raises(ValueError, match="eval.coverage_targets"):
        config_lib.validate_config(_small_config(**{"eval.coverage_targets": -1}))
    config_lib.validate_config(_small_config(**{"eval.coverage_targets": 0}))  # 0: no coverage
