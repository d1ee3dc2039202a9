"""Multi-process data-parallel training on CPU: two local processes (localhost coordinator, gloo
collectives, one device each) train as one process with two host devices does, write one run
directory, resume together after both are killed, and evaluate (process 0 alone, the other
waiting) with `--evaluate` and in `experiments.compare`.

Subprocesses only (`python -m experiments.train` / `experiments.compare`), tiny networks, with
component adding and removal on: the state (parameters, optimiser, trust regions, active
slots) must match.
"""

import csv
import json
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from avips_jax import checkpoint, run
from tests import fingerprints
from tests.experiments import cli

SPEC = "moving_gmm,test"
STEPS = 40
ARGS = (
    f"--config=experiments/configs/toy.py:{SPEC}",
    f"--config.train.num_steps={STEPS}",
    "--config.train.checkpoint_every=10",
    "--noprogress",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(host_devices: int = 1) -> dict:
    env = cli.module_env()
    flags = env.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count", "--_x")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={host_devices}"
    return env


def _launch_pair(workdir: pathlib.Path, *extra: str) -> list[subprocess.Popen]:
    """`experiments.train` on the toy target in two processes."""
    return _launch_pair_of("experiments.train", *ARGS, f"--workdir={workdir}", *extra)


def _launch_pair_of(module: str, *args: str) -> list[subprocess.Popen]:
    port = _free_port()
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                *args,
                f"--coordinator_address=localhost:{port}",
                "--num_processes=2",
                f"--process_id={i}",
            ],
            cwd=cli.ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]


def _finish(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    outputs = [p.communicate(timeout=600) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]


def _leaves(workdir: pathlib.Path):
    state = checkpoint.load_model(workdir).state
    return jax.tree_util.tree_flatten_with_path(state)[0]


def _assert_same(a: pathlib.Path, b: pathlib.Path) -> None:
    for (path, x), (_, y) in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_allclose(
            np.asarray(x, np.float64),
            np.asarray(y, np.float64),
            rtol=1e-6,
            atol=1e-7,
            err_msg=jax.tree_util.keystr(path),
        )


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> pathlib.Path:
    workdir = tmp_path_factory.mktemp("distributed") / "two_processes"
    results = _finish(_launch_pair(workdir))
    for code, _, err in results:
        assert code == 0, err[-3000:]
    assert "in 2 process(es)" in results[0][1] and "done:" in results[0][1]
    assert "done:" not in results[1][1]  # process 1 trains but does not report
    return workdir


def test_two_processes_train_as_one_process_with_two_devices(two_processes, tmp_path):
    single = tmp_path / "one_process"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.train", *ARGS, f"--workdir={single}"],
        cwd=cli.ROOT,
        env=_env(host_devices=2),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "in 1 process(es)" in proc.stdout
    _assert_same(two_processes, single)
    # One run directory, written once: every step logged once, the events of both equal.
    lines = (two_processes / run.HISTORY_FILE).read_text().splitlines()
    assert len(lines) == STEPS
    assert checkpoint.all_steps(two_processes) == [20, 30, 40]  # keep_checkpoints = 3
    events = checkpoint.restore_records(two_processes)["events"]
    assert events == checkpoint.restore_records(single)["events"]


# ~1 min in CI; single-process SIGKILL resume stays in the default suite
# (tests/experiments/test_train_cli.py), and CI's default suite is at its 15-minute budget.
@pytest.mark.slow
def test_both_killed_then_relaunched_resume_to_the_same_result(two_processes, tmp_path):
    workdir = tmp_path / "killed"
    procs = _launch_pair(workdir)
    history = workdir / run.HISTORY_FILE
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and all(p.poll() is None for p in procs):
        if history.exists() and len(history.read_text().splitlines()) >= 15:
            break
        time.sleep(0.02)
    for p in procs:
        p.send_signal(signal.SIGKILL)
    _finish(procs)
    stopped = checkpoint.latest_step(workdir)
    assert stopped is not None and stopped < STEPS, stopped
    results = _finish(_launch_pair(workdir))
    for code, _, err in results:
        assert code == 0, err[-3000:]
    assert f"resuming from step {stopped} of {STEPS}" in results[0][1]
    _assert_same(two_processes, workdir)


# The tiny Panda model of tests/fingerprints.py, a few steps, a small test set.
TINY_PANDA = tuple(f"--config.{o}" for o in fingerprints.OVERRIDES["avips"]) + (
    "--config.eval.num_targets=2",
    "--config.eval.samples_per_target=6",
    "--config.eval.coverage_targets=1",
    "--config.eval.coverage_reference=20",
)


def test_evaluate_loads_a_finished_multi_process_run_in_every_process(two_processes, tmp_path):
    # A toy target has no IK evaluation, so this checks the collective restore and the wait
    # alone, cheaply: process 0 restoring by itself once hung here (orbax restores together).
    workdir = tmp_path / "copy"
    shutil.copytree(two_processes, workdir)
    results = _finish(_launch_pair(workdir, "--evaluate"))
    for code, _, err in results:
        assert code == 0, err[-3000:]
    assert f"{workdir}: the run is complete ({STEPS} of {STEPS} steps)" in results[0][1]


@pytest.mark.slow  # ~1 min: a tiny Panda model trained, then evaluated (refinement, latency)
def test_two_processes_train_then_process_0_evaluates_while_the_other_waits(tmp_path):
    # Every process restores the final checkpoint (orbax's restore is collective: process 0
    # alone once hung here); process 0 evaluates and writes, process 1 waits, both exit 0.
    workdir = tmp_path / "panda"
    results = _finish(
        _launch_pair_of(
            "experiments.train",
            "--config=experiments/configs/panda.py:quick",
            "--config.train.num_steps=4",
            "--config.train.checkpoint_every=4",
            *TINY_PANDA,
            "--noprogress",
            f"--workdir={workdir}",
            "--evaluate",
        )
    )
    for code, _, err in results:
        assert code == 0, err[-3000:]
    assert "evaluated:" in results[0][1] and "evaluated:" not in results[1][1]
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["checkpoint_step"] == 4 and metrics["num_targets"] == 2
    assert (workdir / "plots" / "solutions_target0.png").is_file()


@pytest.mark.slow  # ~1.5 min: two methods trained and evaluated in two processes
def test_compare_trains_every_run_in_two_processes_and_process_0_writes_the_report(tmp_path):
    results = _finish(
        _launch_pair_of(
            "experiments.compare",
            "--robots=panda",
            "--methods=avips,vanilla_gmm",
            "--num_steps=4",
            *TINY_PANDA[: len(fingerprints.OVERRIDES["avips"])],
            "--num_targets=2",
            "--samples_per_target=6",
            "--nolatency",
            "--norefine",
            "--noprogress_bar",
            f"--runs_dir={tmp_path / 'runs'}",
            f"--out={tmp_path / 'res' / 'comparison'}",
        )
    )
    for code, _, err in results:
        assert code == 0, err[-3000:]
    assert "table:" in results[0][1] and "table:" not in results[1][1]
    rows = list(csv.DictReader((tmp_path / "res" / "comparison.csv").open()))
    assert [(r["method"], r["status"], r["train_steps"]) for r in rows] == [
        ("avips", "ok", "4"),
        ("vanilla_gmm", "ok", "4"),
    ]
    for method in ("avips", "vanilla_gmm"):
        workdir = tmp_path / "runs" / "panda" / method
        history = (workdir / run.HISTORY_FILE).read_text().splitlines()
        assert [json.loads(line)["step"] for line in history] == [4]  # logged once, by process 0
        assert (workdir / "metrics.json").is_file()
    assert (tmp_path / "res" / "comparison_panda.png").is_file()
