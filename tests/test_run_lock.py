"""One writer per run directory (avips_jax.run_lock): a second trainer fails at once naming the
first, and the lock of a killed process does not block."""

import os
import signal
import subprocess
import sys

import pytest

from avips_jax import run, run_lock
from experiments.configs import toy as toy_configs

HOLDER = """
import sys, time
from avips_jax import run_lock
with run_lock.hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def other_process(tmp_path):
    """A process holding tmp_path's lock; killed (SIGKILL) at the end if still alive."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_a_second_writer_fails_at_once_naming_the_first(tmp_path, other_process):
    with pytest.raises(run_lock.RunDirectoryBusyError, match=f"pid {other_process.pid} on "):
        with run_lock.hold(tmp_path):
            pass


def test_the_lock_of_a_killed_process_does_not_block(tmp_path, other_process):
    os.kill(other_process.pid, signal.SIGKILL)
    other_process.wait()
    with run_lock.hold(tmp_path) as path:
        assert f"pid {os.getpid()} " in path.read_text()
    with run_lock.hold(tmp_path):  # released on exit: taken again
        pass


def test_training_into_a_busy_directory_writes_nothing(tmp_path, other_process):
    config = toy_configs.get_config("moving_gmm,test")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(run_lock.RunDirectoryBusyError, match="being trained by another process"):
        run.train_and_checkpoint(config, tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == before == [run_lock.LOCK_FILE]
