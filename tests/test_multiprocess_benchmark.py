"""benchmarks/multiprocess.py at tiny sizes: both layouts run (the 2-process one through
jax.distributed on localhost) and the table holds them with the command."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow  # ~1.5 min on 2 cores: three worker processes compile the step
def test_tiny_run_times_both_layouts(tmp_path):
    out = tmp_path / "multiprocess.md"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.multiprocess", "--tiny", f"--output={out}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert f"python -m benchmarks.multiprocess --tiny --output={out}`" in text
    rows = [
        line
        for line in text.splitlines()
        if line.startswith("| 1 process") or line.startswith("| 2 processes")
    ]
    assert len(rows) == 2
    assert rows[0].split("|")[2].strip() == "1" and rows[1].split("|")[2].strip() == "2"
    assert rows[0].endswith("| 1.00x |")
