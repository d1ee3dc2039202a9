"""benchmarks/multiprocess.py at tiny sizes: both layouts run (the 2-process one through
jax.distributed on localhost) and the table holds them with the command."""

import pytest

from tests.experiments import cli


@pytest.mark.slow  # ~1.5 min on 2 cores: three worker processes compile the step
def test_tiny_run_times_both_layouts(tmp_path):
    out = tmp_path / "multiprocess.md"
    proc = cli.run_module(
        "benchmarks.multiprocess", "--tiny", f"--output={out}", timeout=900
    )  # the tiny mode compiles with XLA's optimisations off anyway
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
