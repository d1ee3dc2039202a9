"""run.train_and_evaluate: a run directory trained, then evaluated on the config's test set."""

import json

import pytest

from avips_jax import baselines, run
from experiments.configs import toy as toy_configs
from tests import fingerprints

pytestmark = pytest.mark.usefixtures("fast_compiles")


def _tiny_panda():
    c = fingerprints.method_config("avips")  # the tiny Panda model of the fingerprints
    c.train.num_steps = 2
    c.train.checkpoint_every = 2
    c.eval.num_targets = 3
    c.eval.samples_per_target = 6
    return c


@pytest.mark.slow  # ~35 s; tests/test_wheel.py trains then evaluates a robot run too
def test_trains_then_writes_the_metrics_of_the_final_model(tmp_path):
    workdir = tmp_path / "run"
    config = _tiny_panda()
    result, metrics = run.train_and_evaluate(
        config, workdir, progress=False, refine_fn=None, latency=False
    )
    assert int(result.state.step) == 2
    saved = json.loads((workdir / "metrics.json").read_text())
    assert saved["checkpoint_step"] == 2 and saved["num_targets"] == 3
    assert saved["position_error_mean_mm"] == metrics["position_error_mean_mm"] > 0
    assert (workdir / "plots" / "solutions_target0.png").is_file()
    # A finished run is not trained again, but evaluated again (the same numbers).
    again, metrics_again = run.train_and_evaluate(
        config, workdir, progress=False, refine_fn=None, latency=False
    )
    assert again is None
    assert metrics_again["position_error_mean_mm"] == metrics["position_error_mean_mm"]


def test_a_target_without_a_robot_is_trained_but_not_evaluated(tmp_path):
    result, metrics = run.train_and_evaluate(
        toy_configs.get_config("moving_gmm,test"), tmp_path / "toy", progress=False
    )
    assert result is not None and metrics is None
    assert not (tmp_path / "toy" / "metrics.json").exists()


def test_a_method_that_refuses_its_target_writes_nothing(tmp_path):
    config = toy_configs.get_config("moving_gmm,test")
    config.method = "flow"  # learns from valid pairs, which a toy target does not have
    config.baseline = baselines.default_baseline_config("flow")
    with pytest.raises(ValueError, match="valid"):
        run.train_and_checkpoint(config, tmp_path / "flow", progress=False)
    assert not (tmp_path / "flow").exists()
