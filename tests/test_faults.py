"""Fault injection, for real: signals to a training subprocess, concurrent launches, garbled
checkpoint bytes, a diverging and a NaN learning rate, a read-only run directory. Each test
asserts the exit code, the message, and that nothing was lost (README, "When things go wrong").

The training runs are `python -m experiments.train` subprocesses on the toy target with tiny
networks; final states are compared bit for bit between subprocesses only (XLA:CPU results of
this process and a subprocess may differ in the last bit).
"""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from avips_jax import checkpoint, divergence, fit, preemption, run, run_report
from experiments.configs import panda as panda_configs
from experiments.configs import toy as toy_configs
from tests.experiments import cli

pytestmark = pytest.mark.usefixtures("fast_compiles")

SPEC = "moving_gmm,test"
STEPS = 60
# Logs every step (the tests watch history.jsonl), checkpoints at 20, 40 and 60; no component
# adding or removal (their compilations would dominate; resuming through them is tested in
# tests/experiments/test_train_cli.py).
LONGER = (
    f"--config.train.num_steps={STEPS}",
    "--config.train.checkpoint_every=20",
    "--config.components.add=false",
    "--config.components.remove=false",
)


def _train_args(workdir: pathlib.Path, *extra: str) -> list[str]:
    return [
        "-m",
        "experiments.train",
        "--noprogress",
        f"--config=experiments/configs/toy.py:{SPEC}",
        *LONGER,
        f"--workdir={workdir}",
        *extra,
    ]


def _popen(workdir: pathlib.Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ)
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    env["PYTHONPATH"] = str(cli.ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, *_train_args(workdir, *extra)],
        cwd=cli.ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _logged_steps(workdir: pathlib.Path) -> int:
    path = workdir / run.HISTORY_FILE
    return len(path.read_text().splitlines()) if path.exists() else 0


def _assert_same_state(a: pathlib.Path, b: pathlib.Path) -> None:
    sa, sb = checkpoint.load_model(a).state, checkpoint.load_model(b).state
    flat = jax.tree_util.tree_flatten_with_path(sa)[0]
    for (path, x), y in zip(flat, jax.tree.leaves(sb), strict=True):
        np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pathlib.Path:
    """An uninterrupted run, launched together with a second training process on the same
    directory: exactly one trains; the other exits at once, naming it."""
    workdir = tmp_path_factory.mktemp("faults") / "reference"
    workdir.mkdir()
    first = _popen(workdir)
    time.sleep(0.2)
    second = _popen(workdir)
    results = [_finish(first), _finish(second)]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, _, err in results if code == 1)
    assert "is being trained by another process (pid" in loser, loser
    return workdir


def test_concurrent_launches_leave_one_complete_run(reference):
    history = [json.loads(line) for line in (reference / run.HISTORY_FILE).read_text().splitlines()]
    assert [h["step"] for h in history] == list(range(1, STEPS + 1))  # no duplicated steps
    assert checkpoint.all_steps(reference) == [20, 40, 60]


# Slow for CI's budget: SIGTERM and SIGINT share one handler (preemption.STOP_SIGNALS); the Ctrl-C
# test below and test_train_cli's SIGKILL resume keep saving and bit-identical resuming default.
@pytest.mark.slow
def test_sigterm_saves_the_current_step_and_the_relaunch_resumes_bit_identically(
    reference, tmp_path
):
    workdir = tmp_path / "run"
    proc = _popen(workdir)
    deadline = time.monotonic() + 240
    while _logged_steps(workdir) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    code, _, err = _finish(proc)
    assert code == 128 + signal.SIGTERM, err
    steps = checkpoint.all_steps(workdir)
    assert steps and steps[-1] < STEPS, steps
    stopped = steps[-1]
    assert f"stopped by SIGTERM after step {stopped}" in err, err
    assert _logged_steps(workdir) == stopped  # nothing logged that the checkpoint lacks
    code, out, err = _finish(_popen(workdir))
    assert code == 0, err
    assert f"resuming from step {stopped} of {STEPS}" in out
    _assert_same_state(reference, workdir)


def test_ctrl_c_saves_the_step_under_way_and_ends_the_run(tmp_path):
    # A real SIGINT, sent by the process to itself after step 3 (as Ctrl-C would be).
    config = toy_configs.get_config(SPEC)
    config.train.num_steps = 12
    config.components.add = config.components.remove = False

    def interrupt(report):
        if report.step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(preemption.Preempted, match="stopped by SIGINT after step 3") as err:
        run.train_and_checkpoint(config, tmp_path / "run", progress=False, on_step=interrupt)
    assert err.value.exit_code == 130
    assert checkpoint.all_steps(tmp_path / "run") == [3]  # checkpoint_every is 4
    assert signal.getsignal(signal.SIGINT) is before  # the handler is restored
    records = checkpoint.restore_records(tmp_path / "run")
    assert [h["step"] for h in records["history"]] == [1, 2, 3]


def test_a_garbled_newest_checkpoint_is_set_aside_and_the_run_resumes_from_the_one_before(
    reference, tmp_path
):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    newest = checkpoint.checkpoint_dir(workdir) / str(STEPS)
    for data in (p for p in newest.rglob("*") if p.is_file() and p.parent.name == "d"):
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0x10  # the same size, one bit flipped
        data.write_bytes(bytes(raw))
    code, out, err = _finish(_popen(workdir, f"--config.train.num_steps={STEPS}"))
    assert code == 0, err
    moved = workdir / run.CORRUPT_DIR / str(STEPS)
    assert f"checkpoint {newest} is damaged" in out and f"moved it to {moved}" in out, out
    assert "resuming from step 40" in out and "Traceback" not in out + err
    assert not re.findall(r"^I\d{4} ", err, re.M)  # no INFO lines (orbax logs each file)
    assert moved.is_dir()  # kept, not deleted
    _assert_same_state(reference, workdir)


def test_a_diverging_run_stops_with_exit_3_and_keeps_finite_checkpoints(tmp_path):
    workdir = tmp_path / "run"
    proc = _popen(workdir, "--config.train.component_lr=1e30", "--config.train.gate_lr=1e30")
    code, _, err = _finish(proc)
    assert code == 3, err
    assert "the run diverged" in err and "lower the learning rates" in err
    assert "Traceback" not in err
    steps = checkpoint.all_steps(workdir)
    assert steps and steps[-1] < STEPS
    for step in steps:  # every checkpoint it wrote is finite and loads
        state = checkpoint.load_model(workdir, step).state
        assert divergence.nonfinite_leaves(state) == []


def test_a_nan_learning_rate_is_refused_before_anything_is_written(tmp_path):
    config = toy_configs.get_config(SPEC)
    config.train.component_lr = float("nan")
    with pytest.raises(ValueError, match="train.component_lr must be finite"):
        run.train_and_checkpoint(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def _snapshot(workdir: pathlib.Path) -> dict:
    return {
        str(p.relative_to(workdir)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(workdir.rglob("*"))
    }


def _read_only(workdir: pathlib.Path, cmd: list[str]) -> list[str]:
    """`cmd` run where `workdir` is read-only: for another user, its permission bits; for root
    (whom permission bits do not stop), a read-only bind mount of it in a private mount
    namespace (`unshare -m`), so writes fail with EROFS as on a read-only file system."""
    for path in [workdir, *workdir.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    if os.geteuid() != 0:
        return cmd
    if shutil.which("unshare") is None:
        pytest.skip("root without unshare(1): no way to make a directory read-only")
    mount = f'mount --bind "{workdir}" "{workdir}" && mount -o remount,bind,ro "{workdir}"'
    return ["unshare", "-m", "sh", "-c", f'{mount} && exec "$@"', "sh", *cmd]


@pytest.mark.slow  # ~50 s: a tiny Panda trained, then evaluated twice (CI's 15-minute budget)
def test_a_read_only_run_evaluates_into_out_and_fails_at_once_without_it(tmp_path):
    workdir, out = tmp_path / "run", tmp_path / "out"
    config = panda_configs.get_config("quick")
    config.model.num_components, config.model.initial_components = 2, 1
    config.model.component_hidden, config.model.gate_hidden = (8,), (8,)
    config.eval.num_targets, config.eval.samples_per_target = 1, 2
    checkpoint.save_config(workdir, config)
    checkpoint.save(workdir, fit.build(config)[3])
    before = _snapshot(workdir)
    env = dict(os.environ)
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    env["PYTHONPATH"] = str(cli.ROOT) + os.pathsep + env.get("PYTHONPATH", "")

    def evaluate(*args):
        cmd = [sys.executable, "-m", "experiments.evaluate", f"--workdir={workdir}", *args]
        return subprocess.run(
            _read_only(workdir, cmd),
            cwd=cli.ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    try:
        proc = evaluate("--nolatency", "--norefine")
        assert proc.returncode == 1, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(f"evaluate: error: cannot write to {workdir}"), proc.stderr
        assert "--out=DIR" in last
        proc = evaluate("--nolatency", "--norefine", f"--out={out}")
        assert proc.returncode == 0, proc.stderr
        assert not re.findall(r"^I\d{4} ", proc.stderr, re.M)  # no INFO lines (orbax's)
        assert json.loads((out / run_report.METRICS_FILE).read_text())["num_targets"] == 1
        assert (out / run_report.PLOTS_DIR / "position_error_hist.png").is_file()
        assert _snapshot(workdir) == before
    finally:
        for path in [workdir, *workdir.rglob("*")]:
            path.chmod(0o755)
