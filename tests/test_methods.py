"""The method registry: every method is a Trainer built by name, and refuses what it cannot run."""

import jax
import pytest

from avips_jax import methods, targets, train
from avips_jax.baselines import BaselineState
from avips_jax.trainer import Trainer
from tests import fingerprints


@pytest.mark.parametrize("method", sorted(methods.METHODS))
def test_every_method_is_a_trainer_with_its_own_state(method):
    config = fingerprints.method_config(method)
    trainer = methods.make_trainer(config, targets.from_config(config))
    assert isinstance(trainer, Trainer) and trainer.log_scalars is not None
    state = jax.eval_shape(trainer.init, jax.random.PRNGKey(0))  # shapes only: no compilation
    gmm = method in ("avips", "vanilla_gmm")
    assert isinstance(state, train.TrainState if gmm else BaselineState)
    assert (trainer.adapt is not None) == gmm  # only the GMMs add and remove components


def test_unknown_methods_and_missing_sections_are_named():
    config = fingerprints.method_config("avips")
    target = targets.from_config(config)
    config.method = "vips"
    with pytest.raises(ValueError, match=r"method must be one of \('avips', 'vanilla_gmm'"):
        methods.make_trainer(config, target)
    config.method = "flow"  # no config.baseline section
    with pytest.raises(ValueError, match="needs a config.baseline section"):
        methods.make_trainer(config, target)
    assert set(methods.extra_sections("gan")) == {"baseline"}
    assert methods.extra_sections("avips") == {}


def test_the_vanilla_gmm_refuses_avips_techniques():
    config = fingerprints.method_config("vanilla_gmm")
    config.projection.enabled = True
    config.sir.enabled = True
    with pytest.raises(ValueError, match=r"switch off \['projection.enabled', 'sir.enabled'\]"):
        methods.make_trainer(config, targets.from_config(config))
