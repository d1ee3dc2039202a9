"""Target annealing (train.anneal_fraction): the objective first sees the tempered target
beta * log p(x | c), beta rising log-linearly from train.anneal_start to 1."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avips_jax import config as config_lib
from avips_jax import fit, presets, train
from avips_jax.settings import Settings
from tests.test_train import _small_config

pytestmark = pytest.mark.usefixtures("fast_compiles")  # compile time dominates


def test_beta_rises_log_linearly_from_the_start_value_to_one():
    beta = lambda step, steps=100: float(train.target_beta(jnp.int32(step), steps, 0.01))
    assert beta(0) == pytest.approx(0.01)
    assert beta(50) == pytest.approx(0.1, rel=1e-5)  # the geometric midpoint
    assert beta(100) == 1.0 and beta(1000) == 1.0
    assert all(beta(s) < beta(s + 1) for s in range(100))
    assert beta(0, steps=0) == 1.0  # annealing off


@dataclasses.dataclass(frozen=True)
class _Scaled:
    """A target whose log-density is `scale` times `base`'s (everything else delegated)."""

    base: object
    scale: float

    def log_prob(self, x, contexts):
        return self.scale * self.base.log_prob(x, contexts)

    def __getattr__(self, name):
        return getattr(self.base, name)


@pytest.mark.parametrize("method", ["avips", "vanilla_gmm"])
def test_the_loss_at_beta_is_the_loss_of_the_tempered_target(method):
    c = _small_config()
    if method == "vanilla_gmm":
        c = presets.as_vanilla_gmm(c)
    target, module, _, state, _ = fit.build(c)
    contexts = target.sample_contexts(jax.random.PRNGKey(0), 8)
    old = module.apply(state.variables, contexts)
    args = (state.params, state.slots, old, state.active, state.trust_region, contexts)
    key = jax.random.PRNGKey(1)

    loss = jax.jit(
        train.make_loss_fn(Settings.from_config(c), module, target)
    )  # beta is traced: one compilation
    scaled_loss = jax.jit(train.make_loss_fn(Settings.from_config(c), module, _Scaled(target, 0.3)))
    tempered = loss(*args, key, 0.3)[0]
    np.testing.assert_allclose(tempered, scaled_loss(*args, key, 1.0)[0], rtol=1e-5)
    assert abs(float(tempered) - float(loss(*args, key, 1.0)[0])) > 1e-3  # beta changes it


def test_an_annealed_run_logs_beta_and_ends_on_the_real_target():
    c = _small_config(
        **{"train.num_steps": 6, "train.anneal_fraction": 0.7, "train.anneal_start": 0.1}
    )
    assert Settings.from_config(c).schedule.anneal_steps == 4
    result = fit.fit(c, progress=False)
    betas = [row["target_beta"] for row in result.history]
    assert betas[0] == pytest.approx(0.1 ** (1 - 1 / 4), rel=1e-5)  # logged after step 1
    assert betas[-1] == 1.0 and np.all(np.diff(betas) >= 0)
    assert all(np.isfinite(row["elbo"]) for row in result.history)


def test_anneal_settings_are_checked():
    with pytest.raises(ValueError, match="anneal_fraction"):
        config_lib.validate_config(_small_config(**{"train.anneal_fraction": 1.5}))
    with pytest.raises(ValueError, match="anneal_start"):
        config_lib.validate_config(
            _small_config(**{"train.anneal_fraction": 0.5, "train.anneal_start": 0.0})
        )
