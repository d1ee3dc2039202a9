"""`python -m experiments.evaluate`: metrics.json, plots and table of a (tiny, untrained) Panda
run directory; one-line errors with exit status 1 and nothing overwritten on bad input."""

import json
import pathlib
import subprocess

import jax
import numpy as np
import pytest

from avips_jax import checkpoint, fit, refine, run_report
from experiments.configs import panda as panda_configs
from tests.experiments import cli

pytestmark = pytest.mark.usefixtures("fast_compiles")

PLOTS = ("solutions_target0.png", "position_error_hist.png", "component_weights.png")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return cli.run_module("experiments.evaluate", *args)


def _config():
    c = panda_configs.get_config("quick")
    c.model.num_components = 3
    c.model.initial_components = 2
    c.model.component_hidden = (8,)
    c.model.gate_hidden = (8,)
    c.eval.num_targets = 3
    c.eval.samples_per_target = 6
    c.eval.seed = 7
    c.eval.coverage_reference = 64  # the config's N_ref reaches coverage_metrics
    return c


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> pathlib.Path:
    """A run directory with the initial (untrained) state saved as a checkpoint, and a history."""
    workdir = tmp_path_factory.mktemp("eval") / "run"
    config = _config()
    _, _, _, state, _ = fit.build(config)
    checkpoint.save_config(workdir, config)
    checkpoint.save(workdir, state)
    records = [{"step": s, "elbo": -10.0 / s, "wall_time_s": 1.5 * s} for s in (1, 2)]
    (workdir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return workdir


def test_cli_writes_metrics_plots_and_table(run_dir):
    proc = _cli(f"--workdir={run_dir}", "--num_targets=4", "--nolatency", "--norefine")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Not the config's eval setting: its own directory, so the default metrics stay as they are.
    out = run_dir / "eval" / "targets4_norefine_nolatency"
    assert not (run_dir / "metrics.json").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["robot"] == "panda" and metrics["context"] == "position"
    assert metrics["position_std_m"] == 0.01
    assert metrics["num_targets"] == 4  # the flag overrides config.eval.num_targets
    assert metrics["samples_per_target"] == 6 and metrics["test_seed"] == 7
    assert metrics["checkpoint_step"] == 0 and metrics["train_wall_time_s"] == 3.0
    assert metrics["hardware"].startswith("cpu") and metrics["jax_version"]
    assert 0 <= metrics["success_rate_raw"] <= 1 and metrics["position_error_mean_mm"] > 0
    assert "| position_error_mean_mm |" in proc.stdout
    for name in (*PLOTS, "training_curves.png"):
        path = out / "plots" / name
        assert path.stat().st_size > 5_000
        assert f"plot: {path}" in proc.stdout


def test_evaluate_run_uses_the_fixed_seeded_test_set(run_dir, tmp_path):
    run = checkpoint.load_model(run_dir)
    contexts = np.asarray(run_report.make_test_contexts(run.target, 3, 7))
    expected = run.target.sample_contexts(jax.random.PRNGKey(7), 3)
    np.testing.assert_allclose(contexts, expected, atol=1e-6)
    refine_fn = refine.refine
    a, paths = run_report.evaluate_run(
        run, latency=False, plot_dir=tmp_path / "a", refine_fn=refine_fn
    )
    assert a["num_targets"] == 3 and a["test_seed"] == 7  # config.eval defaults
    assert 0 <= a["success_rate_refined"] <= 1 and a["mmd_num_targets"] >= 1
    assert a["mmd"] >= 0 and a["mmd_uniform_baseline"] >= 0
    assert a["coverage_num_reference"] == 64 and a["coverage_samples"] == 6
    assert a["coverage_num_targets"] <= 3
    # Position contexts: LM never raises the error, so 30 iterations converge at least as often.
    assert 0 <= a["converged_fraction_5it"] <= a["converged_fraction_30it"] <= 1
    assert "| coverage_ratio |" in run_report.format_table(a)
    assert sorted(p.name for p in paths) == sorted((*PLOTS, "training_curves.png"))
    b, _ = run_report.evaluate_run(run, seed=8, latency=False, plot_dir=tmp_path / "b")
    assert b["test_seed"] == 8
    assert b["position_error_mean_mm"] != a["position_error_mean_mm"]


def _assert_one_line_error(proc, *needles):
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("evaluate: error:"), proc.stderr
    for needle in needles:
        assert needle in last, last


def test_missing_workdir_or_checkpoint_is_a_one_line_error(tmp_path):
    _assert_one_line_error(_cli(f"--workdir={tmp_path / 'nope'}"), "does not exist")
    (tmp_path / "metrics.json").write_text("keep me")
    _assert_one_line_error(_cli(f"--workdir={tmp_path}"), "config")
    checkpoint.save_config(tmp_path, _config())
    _assert_one_line_error(_cli(f"--workdir={tmp_path}"), "no checkpoint")
    assert (tmp_path / "metrics.json").read_text() == "keep me"
    assert not (tmp_path / "plots").exists()


def test_bad_settings_are_refused_before_writing(run_dir):
    before = (run_dir / "metrics.json").read_bytes() if (run_dir / "metrics.json").exists() else b""
    _assert_one_line_error(_cli(f"--workdir={run_dir}", "--num_targets=0"), "num_targets")
    _assert_one_line_error(_cli(f"--workdir={run_dir}", "--samples_per_target=1"), "samples")
    after = (run_dir / "metrics.json").read_bytes() if (run_dir / "metrics.json").exists() else b""
    assert before == after


def test_each_evaluation_setting_has_its_own_output_directory(run_dir):
    config = _config()  # eval: 3 targets x 6 samples, seed 7

    def where(**kwargs):
        path = run_report.output_dir(run_dir, config, latest_step=0, **kwargs)
        return str(path.relative_to(run_dir))

    assert where() == "."  # the default setting: the run directory
    assert where(num_targets=3, samples_per_target=6, seed=7, step=0) == "."
    assert where(num_targets=1000) == "eval/targets1000"
    assert where(step=4, seed=8, refine=False) == "eval/step4_seed8_norefine"
    assert where(samples_per_target=10, latency=False) == "eval/samples10_nolatency"


def test_an_unwritable_output_is_refused_before_any_work(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(run_report.OutputNotWritableError, match="cannot write to .*--out=DIR"):
        run_report.check_writable(tmp_path / "file" / "out")
    run_report.check_writable(tmp_path / "new" / "out")  # created
    assert (tmp_path / "new" / "out").is_dir() and not list((tmp_path / "new" / "out").iterdir())


def test_table_and_settings_helpers():
    table = run_report.format_table({"a": 0.123456, "b": 3, "nested": {"x": 1}})
    assert table.splitlines() == ["| metric | value |", "|---|---|", "| a | 0.1235 |", "| b | 3 |"]
    settings = run_report.eval_settings(_config(), samples_per_target=10)
    assert settings == {
        "num_targets": 3,
        "samples_per_target": 10,
        "seed": 7,
        "coverage_targets": 50,
        "coverage_reference": 64,
    }
    with pytest.raises(ValueError, match="num_targets"):
        run_report.eval_settings(_config(), num_targets=-1)
