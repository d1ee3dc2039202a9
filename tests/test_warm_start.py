"""The mass-covering terms on valid pairs: the warm start (train.make_warm_start_step, maximum
likelihood for the first steps, then aVIPS) and the forward-KL term kept beside VIPS's loss
(train.forward_kl_weight)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from avips_jax import config as config_lib
from avips_jax import fit, gmm, networks, presets, train
from avips_jax.baselines import valid_pairs
from experiments.configs import panda
from tests.test_train import _small_config

pytestmark = pytest.mark.usefixtures("fast_compiles")


def _tiny_panda(*overrides):
    c = panda.get_config("quick")
    return presets.apply_overrides(
        c,
        (
            "model.num_components=3",
            "model.initial_components=3",
            "model.component_hidden=(32, 32)",
            "model.gate_hidden=(16,)",
            "train.batch_contexts=16",
            "train.num_steps=45",
            "train.warm_start_steps=40",
            "train.warm_start_pairs=128",
            "train.log_every=10",
            "components.add=False",
            "components.remove=False",
            *overrides,
        ),
    )


@pytest.mark.slow  # a lever off in every preset; slow for CI's 15-minute budget
def test_warm_start_fits_valid_pairs_then_hands_over_to_vips():
    c = _tiny_panda()
    target, module, _, state, step_fn = fit.build(c)
    contexts = target.sample_contexts(jax.random.PRNGKey(5), c.train.batch_contexts)
    held_c, held_q = valid_pairs.valid_pairs(target, jax.random.PRNGKey(99), 512)

    def held_out_nll(s):
        pred = module.apply(s.variables, held_c)
        return -float(jnp.mean(gmm.log_prob(pred, s.active, held_q[None])))

    start = held_out_nll(state)
    for t in range(c.train.num_steps):
        state, metrics = step_fn(state, contexts)
        assert int(metrics["skipped"]) == 0
        warm = t < c.train.warm_start_steps
        assert ("warm_start_nll" in metrics) == warm and ("elbo" in metrics) == (not warm)
        if warm:  # the old model follows, so the first VIPS step starts unprojected
            assert jax.tree.all(jax.tree.map(jnp.array_equal, state.old_params, state.params))
        if t + 1 == c.train.warm_start_steps:
            after_warm = held_out_nll(state)
    assert after_warm < start - 1.0, (start, after_warm)  # ML fits the held-out pairs
    assert np.isfinite(float(metrics["elbo"]))


def _held_out_nll(module, state, pairs):
    pred = module.apply(state.variables, pairs[0])
    return -float(jnp.mean(gmm.log_prob(pred, state.active, pairs[1][None])))


@pytest.mark.slow  # ~35 s; a lever off in every preset
def test_forward_kl_term_pulls_the_model_onto_valid_pairs_beside_vips():
    pairs = valid_pairs.valid_pairs(fit.build(_tiny_panda())[0], jax.random.PRNGKey(99), 512)
    nll = {}
    for weight in (0.0, 1.0):
        c = _tiny_panda("train.warm_start_steps=0", f"train.forward_kl_weight={weight}")
        target, module, _, state, step_fn = fit.build(c)
        pairs = pairs or valid_pairs.valid_pairs(target, jax.random.PRNGKey(99), 512)
        contexts = target.sample_contexts(jax.random.PRNGKey(5), c.train.batch_contexts)
        for _ in range(c.train.num_steps):
            state, metrics = step_fn(state, contexts)
            assert int(metrics["skipped"]) == 0
        assert ("forward_kl_nll" in metrics) == (weight > 0)
        assert np.isfinite(float(metrics["elbo"]))
        nll[weight] = _held_out_nll(module, state, pairs)
    # Same seed and steps: the term is what makes the held-out pairs more likely.
    assert nll[1.0] < nll[0.0] - 1.0, nll


@pytest.mark.slow  # a lever off in every preset; slow for CI's 15-minute budget
def test_forward_kl_term_can_leave_the_gate_alone():
    c = _tiny_panda("train.warm_start_steps=0")
    target, module, _, state, _ = fit.build(c)
    gate_norms = {}
    for through_gate in (True, False):
        nll = train.make_pair_nll(module, target, 16, "test", through_gate=through_gate)
        loss = lambda p, nll=nll: nll(p, state.slots, state.active, jax.random.PRNGKey(0))[0]
        grads = jax.grad(loss)(state.params)
        gate_norms[through_gate] = float(optax.tree.norm(grads[networks.GATE]))
        assert float(optax.tree.norm(grads)) > gate_norms[through_gate]  # the components learn
    assert gate_norms[True] > 0.0 and gate_norms[False] == 0.0, gate_norms


def test_warm_start_settings_are_checked():
    with pytest.raises(ValueError, match="warm_start_steps"):
        config_lib.validate_config(_tiny_panda("train.warm_start_steps=60"))
    with pytest.raises(ValueError, match="warm_start_pairs"):
        config_lib.validate_config(_tiny_panda("train.warm_start_pairs=0"))
    # A target without contexts_from_joints (a toy GMM) cannot make pairs: named error.
    toy = _small_config(**{"train.warm_start_steps": 2})
    with pytest.raises(ValueError, match="contexts_from_joints"):
        fit.build(toy)
    for bad in (-0.5, float("nan"), float("inf")):
        c = _tiny_panda()
        c.train.forward_kl_weight = bad
        with pytest.raises(ValueError, match="forward_kl_weight"):
            config_lib.validate_config(c)
    with pytest.raises(ValueError, match="forward_kl_pairs"):
        config_lib.validate_config(
            _tiny_panda("train.forward_kl_weight=1.0", "train.forward_kl_pairs=0")
        )
    toy = _small_config(**{"train.forward_kl_weight": 1.0})
    with pytest.raises(ValueError, match="train.forward_kl_weight > 0 needs"):
        fit.build(toy)
