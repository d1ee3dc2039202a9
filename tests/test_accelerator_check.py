"""scripts/accelerator_check.sh in its CPU dry-run mode: the whole flow (benchmark, a probe run,
its continuation to the steps that fit, evaluation, the summary) at tiny sizes."""

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow  # ~2.5 min on 2 cores (a benchmark, two training launches, an evaluation)
def test_dry_run_writes_the_tables_within_its_budget(tmp_path):
    out = tmp_path / "check"
    env = dict(os.environ, DRY_RUN="1", OUT=str(out), RUN=str(tmp_path / "run"), BUDGET_S="400")
    proc = subprocess.run(
        ["bash", "scripts/accelerator_check.sh"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (out / "summary.md").read_text()
    assert "| dry run (CPU, tiny sizes) | yes |" in summary
    assert "| device | 1 x cpu (cpu) |" in summary
    steps = int(summary.split("| train steps | ")[1].split(" |")[0])
    assert steps >= 4  # the probe, then as many more as the budget allowed
    assert "## Train step" in (out / "accelerator.md").read_text()
    last = proc.stdout.strip().splitlines()[-1]
    assert "budget used" in last and "of 400 s" in last
    used = int(last.split("budget used ")[1].split(" of")[0])
    assert used <= 400
    # A second check into the same OUT refuses instead of mixing two runs.
    again = subprocess.run(
        ["bash", "scripts/accelerator_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert again.returncode == 1 and "exists; choose another RUN" in again.stderr
