"""Multi-process data-parallel training on CPU: two local processes (localhost coordinator, gloo
collectives, one device each) train as one process with two host devices does, write one run
directory, and resume together after both are killed.

Subprocesses only (`python -m experiments.train`), toy target, tiny networks, with component
adding and removal on: the state (parameters, optimiser, trust regions, active slots) must match.
"""

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from avips_jax import checkpoint, run
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
    env = dict(os.environ)
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    env["PYTHONPATH"] = str(cli.ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    flags = env.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count", "--_x")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={host_devices}"
    return env


def _launch_pair(workdir: pathlib.Path, *extra: str) -> list[subprocess.Popen]:
    port = _free_port()
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "experiments.train",
                *ARGS,
                f"--workdir={workdir}",
                f"--coordinator_address=localhost:{port}",
                "--num_processes=2",
                f"--process_id={i}",
                *extra,
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


@pytest.mark.slow  # two more 2-process launches (~2 min on 2 cores) than the default suite has
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


def test_evaluate_after_a_multi_process_run_is_refused_up_front(tmp_path):
    # Process 0 alone would restore the checkpoint, which orbax makes every process wait for.
    results = _finish(_launch_pair(tmp_path / "run", "--evaluate"))
    for code, _, err in results:
        assert code == 1, err[-2000:]
        assert "--evaluate works in single-process runs only" in err
    assert not (tmp_path / "run").exists()
