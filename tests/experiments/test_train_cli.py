"""`python -m experiments.train`: the run directory, kill-and-resume, refusals with exit code 1.

One real CLI run (a subprocess, toy target, tiny networks, 8 steps) is shared by the tests; a
second run in this process is killed after step 5 and resumed, and must end bit-identical to it.
Both compile with `jax_disable_most_optimizations` (the same numerics in both processes).
"""

import json
import pathlib
import subprocess

import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from avips_jax import checkpoint, fit, run
from experiments.configs import toy as toy_configs
from tests.experiments import cli

pytestmark = pytest.mark.usefixtures("fast_compiles")

SPEC = "moving_gmm,test"  # 8 steps, checkpoints every 4, logs every step
LOGGED = (
    "elbo",
    "entropy",
    "ess",
    "num_active",
    "eps_mean_mean",
    "eps_mean_min",
    "eps_mean_max",
    "eps_cov_mean",
    "eps_cov_min",
    "eps_cov_max",
    "step_time_ms",
    "wall_time_s",
)
DETERMINISTIC = ("loss", "elbo", "entropy", "ess", "num_active", "eps_mean_mean", "eps_cov_max")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return cli.run_module("experiments.train", "--noprogress", *args)


def _snapshot(workdir: pathlib.Path) -> dict:
    """Every file under workdir with its size and modification time."""
    return {
        str(p.relative_to(workdir)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(workdir.rglob("*"))
        if p.is_file()
    }


def _history(workdir: pathlib.Path) -> list[dict]:
    lines = (workdir / run.HISTORY_FILE).read_text().splitlines()
    return [json.loads(line) for line in lines]


def _final_state(workdir: pathlib.Path):
    return checkpoint.load_model(workdir).state


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> pathlib.Path:
    workdir = tmp_path_factory.mktemp("cli") / "run"
    proc = _cli(f"--config=experiments/configs/toy.py:{SPEC}", f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "done:" in proc.stdout
    return workdir


def test_cli_writes_config_checkpoints_history_and_tensorboard(finished_run):
    config = toy_configs.get_config(SPEC)
    saved = json.loads((finished_run / "config.json").read_text())
    assert saved == checkpoint.config_to_dict(config)
    assert checkpoint.all_steps(finished_run) == [4, 8]  # every 4 steps and at the end
    history = _history(finished_run)
    assert [h["step"] for h in history] == list(range(1, 9))
    for entry in history:
        missing = [k for k in LOGGED if k not in entry]
        assert not missing, missing
        assert np.isfinite(entry["elbo"]) and entry["eps_mean_min"] <= entry["eps_mean_max"]
    # The final checkpoint's records hold the same history.
    records = checkpoint.restore_records(finished_run)
    assert [h["elbo"] for h in records["history"]] == [h["elbo"] for h in history]
    acc = event_accumulator.EventAccumulator(str(finished_run / run.TENSORBOARD_DIR))
    acc.Reload()
    for key in ("elbo", "entropy", "eps_cov_max", "step_time_ms"):
        events = acc.Scalars(f"train/{key}")
        assert [e.step for e in events] == list(range(1, 9))
        np.testing.assert_allclose([e.value for e in events], [h[key] for h in history], rtol=1e-6)


class _Killed(Exception):
    pass


def _kill_after_step_5(report: fit.StepReport) -> None:
    if report.step == 5:
        raise _Killed


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    # Both runs in this process: XLA:CPU results have differed in the last bit (4 of 96 leaves,
    # 1e-7) between this process and the CLI's subprocess after tests/test_train.py had compiled
    # other programs here, so the bit-exact comparison is made within one process.
    config = toy_configs.get_config(SPEC)
    finished_run, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    run.train_and_checkpoint(config, finished_run, progress=False)
    with pytest.raises(_Killed):
        run.train_and_checkpoint(config, killed, progress=False, on_step=_kill_after_step_5)
    assert checkpoint.latest_step(killed) == 4
    assert [h["step"] for h in _history(killed)] == [1, 2, 3, 4, 5]
    result = run.train_and_checkpoint(config, killed, progress=False)
    assert int(result.state.step) == 8
    expected, resumed = _final_state(finished_run), _final_state(killed)
    flat = jax.tree_util.tree_flatten_with_path(expected)[0]
    leaves = zip(flat, jax.tree.leaves(resumed), jax.tree.leaves(result.state), strict=True)
    for (path, a), b, c in leaves:
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
        np.testing.assert_array_equal(a, c, err_msg=jax.tree_util.keystr(path))
    # The history was cut back to the checkpoint (step 5 logged once) and continued identically.
    uninterrupted, continued = _history(finished_run), _history(killed)
    assert [h["step"] for h in continued] == list(range(1, 9))
    for key in DETERMINISTIC:
        assert [h[key] for h in continued] == [h[key] for h in uninterrupted], key
    assert result.events == checkpoint.restore_records(finished_run)["events"]


def test_finished_run_is_left_alone(finished_run, capsys):
    before = _snapshot(finished_run)
    assert run.train_and_checkpoint(toy_configs.get_config(SPEC), finished_run) is None
    assert "complete" in capsys.readouterr().out
    assert _snapshot(finished_run) == before


def test_other_config_is_refused_and_nothing_is_overwritten(finished_run):
    before = _snapshot(finished_run)
    proc = _cli(
        f"--config=experiments/configs/toy.py:{SPEC}",
        f"--workdir={finished_run}",
        "--config.train.num_steps=7",
        "--config.model.init_std=1.5",
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "train.num_steps: saved 8, given 7" in proc.stderr  # only a longer run continues
    assert "model.init_std: saved 2.0, given 1.5" in proc.stderr
    assert _snapshot(finished_run) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (("--config.train.nope=1",), "train has no key 'nope'"),
        (("--config.trian.num_steps=1",), "config has no key 'trian'"),
        (("--config.target.name=nope",), "unknown target 'nope'"),
        (("--config.train.batch_contexts=0",), "train.batch_contexts must be >= 1"),
    ],
)
def test_bad_config_fails_with_a_clear_message_and_writes_nothing(tmp_path, args, message):
    workdir = tmp_path / "run"
    proc = _cli(f"--config=experiments/configs/toy.py:{SPEC}", f"--workdir={workdir}", *args)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert not workdir.exists()


def test_unknown_preset_fails_in_one_line(tmp_path):
    proc = _cli("--config=experiments/configs/panda.py:huge", f"--workdir={tmp_path / 'run'}")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: --config=experiments/configs/panda.py:huge: ValueError: unknown preset 'huge'; "
        "choose one of quick, full, precise"
    )
    assert "Traceback" not in proc.stderr


def _schedule_free(num_steps: int):
    """SPEC with nothing that depends on num_steps (constant learning rates, no component
    adding), so that a continued run must equal one trained that long from the start."""
    config = toy_configs.get_config(SPEC)
    config.train.num_steps = num_steps
    config.train.lr_decay = "none"
    config.components.add = False
    return config


def test_a_finished_run_continues_with_a_larger_num_steps(tmp_path):
    continued, fresh = tmp_path / "continued", tmp_path / "fresh"
    run.train_and_checkpoint(_schedule_free(4), continued, progress=False)
    first = (continued / "config.json").read_text()
    result = run.train_and_checkpoint(_schedule_free(8), continued, progress=False)
    assert int(result.state.step) == 8
    run.train_and_checkpoint(_schedule_free(8), fresh, progress=False)
    a, b = _final_state(fresh), _final_state(continued)
    flat = jax.tree_util.tree_flatten_with_path(a)[0]
    for (path, x), y in zip(flat, jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))
    assert [h["step"] for h in _history(continued)] == list(range(1, 9))
    assert checkpoint.load_config(continued).train.num_steps == 8
    assert (continued / "config.until_step4.json").read_text() == first  # the old one is kept
    # Shorter is refused, naming the key; bookkeeping keys may change.
    with pytest.raises(run.ConfigMismatchError, match="train.num_steps: saved 8, given 6"):
        run.train_and_checkpoint(_schedule_free(6), continued, progress=False)
    other = _schedule_free(8)
    other.train.keep_checkpoints = 5
    assert run.train_and_checkpoint(other, continued, progress=False) is None  # complete
